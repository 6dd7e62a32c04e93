// Package container runs steps and services in containers through the
// Docker Engine API (the Docker project's Go client), as an
// executor.Backend: one network per stage, a container per step and per
// service, labelled with the run, stage and step, removed when the stage
// closes, and removed by the next attempt at the stage when a worker died
// before it could.
package container

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// Engine settings.
const (
	// EngineAuto uses the Docker Engine when one answers at start, and
	// runs no container steps otherwise (they fail, saying why).
	EngineAuto = "auto"
	// EngineDocker needs the Docker Engine: the service refuses to start
	// without one.
	EngineDocker = "docker"
	// EngineNone runs no container steps.
	EngineNone = "none"
)

// Pull policies.
const (
	PullNever        = "never"
	PullIfNotPresent = "if-not-present"
	PullAlways       = "always"
)

// Defaults of Config.
const (
	DefaultPull   = PullIfNotPresent
	DefaultCPUs   = "2"
	DefaultMemory = "2GiB"
	DefaultPids   = 1024
)

// Label keys on everything the backend starts.
const (
	LabelManaged = "dev.sluice.managed"
	LabelRun     = "dev.sluice.run"
	LabelStage   = "dev.sluice.stage"
	LabelAttempt = "dev.sluice.attempt"
	LabelStep    = "dev.sluice.step"
	LabelService = "dev.sluice.service"
	// LabelBackend tells backends with different container-labels apart
	// (a hash of them), so that one's sweep never touches the other's.
	LabelBackend = "dev.sluice.backend"
)

// Config says how containers run. The zero value, WithDefaults, is the
// Docker Engine of the environment (DOCKER_HOST, else the local socket)
// when it answers, images pulled when missing, 2 CPUs, 2 GiB of memory and
// 1024 processes per container, and each stage's network closed to
// everything outside it.
type Config struct {
	// Engine is EngineAuto (default), EngineDocker or EngineNone.
	Engine string
	// Host is the Docker Engine's address (unix:///var/run/docker.sock,
	// tcp://...); empty: $DOCKER_HOST, else the local socket.
	Host string
	// Pull is when images are pulled: PullNever, PullIfNotPresent or
	// PullAlways.
	Pull string
	// CPUs, Memory and Pids bound each container: CPUs as a decimal
	// ("1.5"), Memory in bytes with a unit ("512MiB"), Pids a count.
	CPUs   string
	Memory string
	Pids   int
	// Egress lets the stage's containers reach beyond their network (the
	// internet, and the host's published ports: the operator's firewall
	// must keep them from the platform then). Off, the network is
	// internal: the stage's containers reach each other and nothing else.
	Egress bool
	// Networks are more Docker networks the operator lets every step
	// container join (a package mirror's, for example).
	Networks []string
	// Labels are NAME=VALUE labels put on everything the backend starts,
	// besides its own.
	Labels []string
	// User runs the steps as "uid[:gid]"; empty: the service's own, so
	// what steps write in the workspace is the service's to remove.
	User string
	// Registries are the registries (host or host:port) on private,
	// loopback or link-local addresses that images may be pulled from;
	// the engine pulls from its host's network, so an image reference is
	// an address a pipeline makes the engine call.
	Registries []string
}

// Flags is what RegisterFlags needs of a flag set (servicekit.Flags).
type Flags interface {
	StringVar(p *string, name, usage string)
	StringsVar(p *[]string, name, usage string)
	IntVar(p *int, name, usage string)
	BoolVar(p *bool, name, usage string)
}

// RegisterFlags registers the container-* settings.
func (c *Config) RegisterFlags(f Flags) {
	f.StringVar(&c.Engine, "container-engine", "runs the steps that name an image: auto (the Docker Engine if one answers at start), docker (needs one), none")
	f.StringVar(&c.Host, "container-host", "the Docker Engine's address; default $DOCKER_HOST, else unix:///var/run/docker.sock")
	f.StringVar(&c.Pull, "container-pull", "when images are pulled: never, if-not-present or always")
	f.StringVar(&c.CPUs, "container-cpus", "CPUs each step and service container may use, such as 1.5")
	f.StringVar(&c.Memory, "container-memory", "memory each step and service container may use, such as 512MiB")
	f.IntVar(&c.Pids, "container-pids", "processes each step and service container may run")
	f.BoolVar(&c.Egress, "container-egress", "let step and service containers reach beyond their stage's network (the internet, the host's published ports)")
	f.StringsVar(&c.Networks, "container-networks", "more Docker networks every step container joins (a package mirror's); the platform's own must not be one")
	f.StringsVar(&c.Labels, "container-labels", "NAME=VALUE labels on every container and network the service starts")
	f.StringVar(&c.User, "container-user", "uid[:gid] steps run as in their containers; default the service's own")
	f.StringsVar(&c.Registries, "container-registries", "registries (host or host:port) on private or loopback addresses that images may be pulled from; others on such addresses are refused")
}

// WithDefaults fills the fields left zero.
func (c Config) WithDefaults() Config {
	if c.Engine == "" {
		c.Engine = EngineAuto
	}
	if c.Pull == "" {
		c.Pull = DefaultPull
	}
	if c.CPUs == "" {
		c.CPUs = DefaultCPUs
	}
	if c.Memory == "" {
		c.Memory = DefaultMemory
	}
	if c.Pids == 0 {
		c.Pids = DefaultPids
	}
	return c
}

// Validate refuses settings the backend cannot run with, naming the
// setting. Call it on WithDefaults' result.
func (c Config) Validate() error {
	var errs []error
	switch c.Engine {
	case EngineAuto, EngineDocker, EngineNone:
	default:
		errs = append(errs, fmt.Errorf("container-engine: %q is not auto, docker or none", c.Engine))
	}
	switch c.Pull {
	case PullNever, PullIfNotPresent, PullAlways:
	default:
		errs = append(errs, fmt.Errorf("container-pull: %q is not never, if-not-present or always", c.Pull))
	}
	if _, err := c.nanoCPUs(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.memoryBytes(); err != nil {
		errs = append(errs, err)
	}
	if c.Pids < 1 {
		errs = append(errs, fmt.Errorf("container-pids is %d; it must be at least 1", c.Pids))
	}
	if _, err := c.labels(); err != nil {
		errs = append(errs, err)
	}
	if c.User != "" && !validUser(c.User) {
		errs = append(errs, fmt.Errorf("container-user: %q is not uid or uid:gid (numbers)", c.User))
	}
	return errors.Join(errs...)
}

func (c Config) nanoCPUs() (int64, error) {
	v, err := strconv.ParseFloat(c.CPUs, 64)
	if err != nil || v <= 0 || v > 1024 || math.IsNaN(v) {
		return 0, fmt.Errorf("container-cpus: %q is not a number of CPUs above 0 (such as 1.5)", c.CPUs)
	}
	return int64(v * 1e9), nil
}

// minMemory is the least memory a container may be given (Docker's own
// floor is 6 MiB).
const minMemory = 6 << 20

func (c Config) memoryBytes() (int64, error) {
	v, err := units.RAMInBytes(c.Memory)
	if err != nil || v < minMemory {
		return 0, fmt.Errorf("container-memory: %q is not an amount of memory of 6MiB or more (such as 512MiB)", c.Memory)
	}
	return v, nil
}

// backendID is LabelBackend's value: a hash of the operator's labels.
func backendID(labels map[string]string) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		_, _ = fmt.Fprintf(h, "%s=%s\n", k, labels[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// labels are the operator's labels; they may not replace the backend's.
func (c Config) labels() (map[string]string, error) {
	out := make(map[string]string, len(c.Labels))
	for _, kv := range c.Labels {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("container-labels: %q is not NAME=VALUE", kv)
		}
		if strings.HasPrefix(k, "dev.sluice.") {
			return nil, fmt.Errorf("container-labels: %q: the dev.sluice. labels are the service's own", k)
		}
		out[k] = v
	}
	return out, nil
}

func validUser(s string) bool {
	uid, gid, hasGid := strings.Cut(s, ":")
	if _, err := strconv.ParseUint(uid, 10, 32); err != nil {
		return false
	}
	if hasGid {
		if _, err := strconv.ParseUint(gid, 10, 32); err != nil {
			return false
		}
	}
	return true
}
