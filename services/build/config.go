package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/stepcache"
	"github.com/sluicehq/sluice/platform/stepgraph"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
)

// Name is the service's name: its NATS user and declarations, its
// variables (SLUICE_BUILD_*), its logs.
const Name = "build"

// Defaults of DefaultConfig.
const (
	DefaultWorkers     = 4
	DefaultStepTimeout = 30 * time.Minute
	DefaultHeartbeat   = 10 * time.Second
	DefaultTailWait    = 10 * time.Minute
	// DefaultMaxArtifactSize bounds one artifact: 2 GiB.
	DefaultMaxArtifactSize = 2 << 30
)

// Config configures the build service.
type Config struct {
	// Settings: DataDir holds the workspaces (and the database by default).
	servicekit.Settings
	// Isolation keeps the steps from the platform (executor.Isolation).
	Isolation executor.Isolation
	// Containers runs the steps that name an image (container.Config).
	Containers container.Config
	// Checkout bounds the checkouts of runs' commits.
	Checkout gitcheckout.Limits
	// Logs bound each run's log.
	Logs steplog.Limits
	// Steps bound how many steps of a stage run at once.
	Steps stepgraph.Limits
	// Caches bound the stage's dependency caches.
	Caches stepcache.Limits
	// SourceURL is the source service's base URL, asked for the values of
	// the secrets steps ask for (stepsecrets); empty: runs whose steps ask
	// for secrets fail.
	SourceURL string
	// Workers is how many builds run at once in this process.
	Workers int
	// DefaultStepTimeout bounds a step that declares no timeout.
	DefaultStepTimeout time.Duration
	// WorkerID names this worker in the builds it holds and in takeover log
	// lines; default <hostname>-<pid>.
	WorkerID string
	// Heartbeat is how often a running build renews its JetStream lease
	// (InProgress) and its lease in the database; a build whose lease was not
	// renewed for two heartbeats and the time a step takes to stop
	// (executor.StopTime) may be taken over, and a worker that could not
	// renew for two heartbeats stops its step. It must stay well under the
	// build-runs consumer's ack wait (30s).
	Heartbeat time.Duration
	// TailWait bounds how long a log tail waits for a run's build to
	// start: longer, and the run is unknown (not_found).
	TailWait time.Duration
	// MaxArtifactSize bounds one artifact, in bytes: a larger file fails
	// the build, naming the artifact and this limit.
	MaxArtifactSize int
}

// DefaultConfig is the configuration a binary starts from.
func DefaultConfig() Config {
	return Config{
		Settings:           servicekit.Settings{DataDir: filepath.Join("data", Name)},
		SourceURL:          stepsecrets.DefaultSourceURL,
		Workers:            DefaultWorkers,
		DefaultStepTimeout: DefaultStepTimeout,
		Heartbeat:          DefaultHeartbeat,
		TailWait:           DefaultTailWait,
		MaxArtifactSize:    DefaultMaxArtifactSize,
	}
}

// RegisterFlags registers the settings with the flags of the process that
// runs the service.
func (c *Config) RegisterFlags(f *servicekit.Flags) {
	c.Settings.RegisterFlags(f)
	c.Isolation.RegisterFlags(f)
	c.Containers.RegisterFlags(f)
	c.Checkout.RegisterFlags(f)
	c.Logs.RegisterFlags(f)
	c.Steps.RegisterFlags(f)
	c.Caches.RegisterFlags(f)
	f.StringVar(&c.SourceURL, "source-url", "the source service's URL (asked for the secrets steps ask for)")
	f.IntVar(&c.Workers, "workers", "builds run at once")
	f.DurationVar(&c.DefaultStepTimeout, "step-timeout", "timeout of steps that declare none")
	f.StringVar(&c.WorkerID, "worker-id", "this worker's name in the builds it holds; default <hostname>-<pid>")
	f.DurationVar(&c.Heartbeat, "heartbeat", "how often a running build renews its lease; a build is taken over after two missed heartbeats and the time a step takes to stop")
	f.IntVar(&c.MaxArtifactSize, "max-artifact-size", "the largest artifact stored, in bytes; a larger one fails the build")
	f.DurationVar(&c.TailWait, "tail-wait", "how long a log tail (sluice logs --follow) waits for a run's build to start before answering that the run has no build")
}

// WithDefaults fills the fields left zero.
func (c Config) WithDefaults() Config {
	c.Settings = c.Settings.WithDefaults(Name)
	c.Containers = c.Containers.WithDefaults()
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.DefaultStepTimeout == 0 {
		c.DefaultStepTimeout = DefaultStepTimeout
	}
	if c.WorkerID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = Name
		}
		c.WorkerID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.TailWait == 0 {
		c.TailWait = DefaultTailWait
	}
	if c.MaxArtifactSize == 0 {
		c.MaxArtifactSize = DefaultMaxArtifactSize
	}
	return c
}

// Validate refuses a configuration the service cannot run with, naming the
// setting. Call it on WithDefaults' result.
func (c Config) Validate() error {
	errs := []error{c.Settings.Validate(), c.Isolation.Validate(), c.Containers.Validate(), c.Checkout.Validate(), c.Logs.Validate(), c.Steps.Validate(), c.Caches.Validate(), stepsecrets.CheckSourceURL(c.SourceURL, false, c.AllowPlainHTTP)}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("workers is %d; it must be at least 1", c.Workers))
	}
	if c.DefaultStepTimeout <= 0 {
		errs = append(errs, fmt.Errorf("step-timeout is %s; it must be positive", c.DefaultStepTimeout))
	}
	if c.WorkerID == "" {
		errs = append(errs, errors.New("worker-id is empty"))
	}
	if c.TailWait < 0 {
		errs = append(errs, fmt.Errorf("tail-wait is %s; it must be positive", c.TailWait))
	}
	if c.MaxArtifactSize < 1 {
		errs = append(errs, fmt.Errorf("max-artifact-size is %d; it must be at least 1 (bytes)", c.MaxArtifactSize))
	}
	if c.Heartbeat <= 0 || c.Heartbeat > 15*time.Second {
		errs = append(errs, fmt.Errorf("heartbeat is %s; it must be positive and at most 15s (half the work queue's ack wait)", c.Heartbeat))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	return nil
}
