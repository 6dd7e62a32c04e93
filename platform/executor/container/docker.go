package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/lastlines"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/runner"
)

// Paths inside a step's container.
const (
	// Workspace is where the run's workspace is mounted, and the step's
	// working directory.
	Workspace = "/workspace"
	// Home is where the run's home is mounted (HOME; TMPDIR is Home/tmp).
	Home = "/sluice/home"
)

const (
	// pingTimeout bounds the check that the engine answers.
	pingTimeout = 5 * time.Second
	// apiTimeout bounds one call to the engine (but a pull, or the wait
	// for a step to end), so an engine that hangs fails the stage.
	apiTimeout = time.Minute
	// pullTimeout bounds pulling one image.
	pullTimeout = 15 * time.Minute
	// cleanupTimeout bounds removing what a stage or step left.
	cleanupTimeout = time.Minute
	// networkRemoveWithin bounds the tries at removing a stage's network
	// that the engine still counts endpoints on.
	networkRemoveWithin = 10 * time.Second
	// outputDrain bounds the wait for a step's output once it exited.
	outputDrain = 5 * time.Second
	// serviceReady bounds the wait for a service whose image declares a
	// health check to be healthy.
	serviceReady = 2 * time.Minute
	// serviceSettle is how long a service without a health check must run
	// before the steps start: one that fails on its configuration has
	// exited by then, and the stage fails saying why.
	serviceSettle = time.Second
)

// Docker is the executor.Backend that runs containers on a Docker Engine.
type Docker struct {
	api            *client.Client
	cfg            Config
	nanoCPUs       int64
	memory         int64
	labels         map[string]string
	backend        string
	user           string
	defaultTimeout time.Duration
	killGrace      time.Duration
	log            *slog.Logger
}

var _ executor.Backend = (*Docker)(nil)

// NewSteps is the executor.Steps a service runs its stages with: local for
// the steps without an image, and the Docker Engine cfg names for the
// others. With EngineAuto and no engine answering, or EngineNone, the
// steps with an image fail, saying why; with EngineDocker and no engine
// answering, NewSteps fails.
func NewSteps(ctx context.Context, cfg Config, local executor.Executor, defaultTimeout time.Duration, log *slog.Logger) (*executor.Steps, error) {
	steps := &executor.Steps{Local: local}
	if cfg.Engine == EngineNone {
		steps.NoContainers = "this service runs no container engine (its container-engine setting is none)"
		log.Info("container steps off: container-engine is none")
		return steps, nil
	}
	d, err := New(ctx, cfg, defaultTimeout, log)
	switch {
	case err != nil && cfg.Engine == EngineAuto:
		steps.NoContainers = "this service found no container engine when it started: " + err.Error()
		log.Warn("container steps off: no Docker Engine answers", slog.Any("error", err))
		return steps, nil
	case err != nil:
		return nil, err
	}
	steps.Containers = d
	return steps, nil
}

// StepBackend is the backend the build and test services run their
// stages with: the process executor (executor.NewLocal, in the step
// sandbox iso says) for the steps without an image, and the Docker Engine
// cfg names for the others (NewSteps).
func StepBackend(iso executor.Isolation, cfg Config, defaultTimeout time.Duration, log *slog.Logger) (*executor.Steps, error) {
	local, err := executor.NewLocal(iso, defaultTimeout, log)
	if err != nil {
		return nil, err
	}
	return NewSteps(context.Background(), cfg, local, defaultTimeout, log)
}

// New connects to the Docker Engine cfg names and checks that it answers.
func New(ctx context.Context, cfg Config, defaultTimeout time.Duration, log *slog.Logger) (*Docker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []client.Opt{client.FromEnv}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	api, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := api.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		_ = api.Close()
		return nil, fmt.Errorf("docker engine at %s does not answer: %w", api.DaemonHost(), err)
	}
	v, err := api.ServerVersion(pctx, client.ServerVersionOptions{})
	if err != nil {
		_ = api.Close()
		return nil, fmt.Errorf("docker engine at %s: %w", api.DaemonHost(), err)
	}
	d := &Docker{api: api, cfg: cfg, user: cfg.User, defaultTimeout: defaultTimeout, killGrace: executor.DefaultKillGrace, log: log}
	// Validate checked them.
	d.nanoCPUs, _ = cfg.nanoCPUs()
	d.memory, _ = cfg.memoryBytes()
	d.labels, _ = cfg.labels()
	d.backend = backendID(d.labels)
	for _, n := range cfg.Networks {
		if _, err := api.NetworkInspect(pctx, n, client.NetworkInspectOptions{}); err != nil {
			_ = api.Close()
			return nil, fmt.Errorf("container-networks: network %s: %w", n, err)
		}
	}
	if d.user == "" {
		d.user = strconv.Itoa(os.Getuid()) + ":" + strconv.Itoa(os.Getgid())
	}
	if d.defaultTimeout <= 0 {
		d.defaultTimeout = executor.DefaultTimeout
	}
	log.Info("container steps run on the Docker Engine", slog.String("host", api.DaemonHost()), slog.String("engine_version", v.Version),
		slog.String("api_version", api.ClientVersion()), slog.String("pull", cfg.Pull), slog.String("cpus", cfg.CPUs),
		slog.String("memory", cfg.Memory), slog.Int("pids", cfg.Pids), slog.Bool("egress", cfg.Egress), slog.Any("networks", cfg.Networks))
	return d, nil
}

// Close closes the connection to the engine.
func (d *Docker) Close() error { return d.api.Close() }

// stageLabels are the labels of what is started for st.
func (d *Docker) stageLabels(st executor.StageSpec) map[string]string {
	l := maps.Clone(d.labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelManaged] = "true"
	l[LabelBackend] = d.backend
	l[LabelRun] = st.RunID
	l[LabelStage] = st.Stage
	l[LabelAttempt] = strconv.Itoa(st.Attempt)
	return l
}

// Open removes what an earlier attempt at st's stage left, makes the
// stage's network, makes sure every image is there (pulling it as the
// pull policy says) and starts the services.
func (d *Docker) Open(ctx context.Context, st executor.StageSpec) (executor.Stage, error) {
	if st.RunID == "" || st.Stage == "" {
		return nil, errors.New("container: a stage needs its run and stage names")
	}
	if err := d.RemoveStage(ctx, st.RunID, st.Stage); err != nil {
		return nil, err
	}
	images := slices.Collect(maps.Values(st.Images))
	for _, svc := range st.Services {
		images = append(images, svc.Image)
	}
	slices.Sort(images)
	for _, img := range slices.Compact(images) {
		if err := d.ensureImage(ctx, img); err != nil {
			return nil, err
		}
	}
	s := &stage{d: d, spec: st, labels: d.stageLabels(st), images: map[string]bool{}}
	for _, img := range images {
		s.images[img] = true
	}
	s.network = resourceName("sluice", st.RunID, st.Stage, strconv.Itoa(st.Attempt))
	noIPv6 := false
	opts := client.NetworkCreateOptions{Driver: "bridge", Labels: s.labels, EnableIPv6: &noIPv6}
	if !d.cfg.Egress {
		// Internal: nothing routed beyond the bridge. And no address of
		// the host's on it: an internal network still has a default route
		// to its gateway, the host, whose own listeners (a platform on
		// this host) would answer through it.
		opts.Internal = true
		opts.Options = map[string]string{"com.docker.network.bridge.inhibit_ipv4": "true"}
	}
	cctx, cancel := context.WithTimeout(ctx, apiTimeout)
	_, err := d.api.NetworkCreate(cctx, s.network, opts)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("container: create the stage's network %s: %w", s.network, err)
	}
	for _, svc := range st.Services {
		if err := s.startService(ctx, svc); err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			_ = s.Close(cctx)
			return nil, err
		}
	}
	return s, nil
}

// RemoveStage removes the containers and networks of the stage of run
// (any attempt): what a worker that died left running.
func (d *Docker) RemoveStage(ctx context.Context, run, stage string) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	return d.sweep(ctx, make(client.Filters).Add("label", LabelRun+"="+run, LabelStage+"="+stage))
}

var _ executor.Sweeper = (*Docker)(nil)

// Sweep removes the containers and networks of stage, started by this
// backend (they carry its operator labels too, so installations that
// share an engine must set labels of their own) more than grace ago, of
// every run whose stage ended says has ended. It returns how many runs it
// swept.
func (d *Docker) Sweep(ctx context.Context, stage string, grace time.Duration, ended func(ctx context.Context, runID string) (bool, error)) (int, error) {
	f := make(client.Filters).Add("label", LabelManaged+"=true", LabelBackend+"="+d.backend, LabelStage+"="+stage)
	lctx, cancel := context.WithTimeout(ctx, apiTimeout)
	list, err := d.api.ContainerList(lctx, client.ContainerListOptions{All: true, Filters: f})
	cancel()
	if err != nil {
		return 0, fmt.Errorf("container: list this backend's containers: %w", err)
	}
	runs := map[string]bool{}
	for _, c := range list.Items {
		if run := c.Labels[LabelRun]; run != "" && time.Since(time.Unix(c.Created, 0)) > grace {
			runs[run] = true
		}
	}
	swept := 0
	var errs []error
	for _, run := range slices.Sorted(maps.Keys(runs)) {
		done, err := ended(ctx, run)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("container: is the %s of run %s over: %w", stage, run, err))
			continue
		case !done:
			continue
		}
		if err := d.RemoveStage(ctx, run, stage); err != nil {
			errs = append(errs, err)
			continue
		}
		swept++
	}
	return swept, errors.Join(errs...)
}

func (d *Docker) sweep(ctx context.Context, f client.Filters) error {
	list, err := d.api.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("container: list what an earlier attempt left: %w", err)
	}
	var errs []error
	for _, c := range list.Items {
		_, err := d.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		switch {
		case err == nil:
			d.log.Info("removed a container a stage left", slog.String("container", strings.Join(c.Names, ",")),
				slog.String("run_id", c.Labels[LabelRun]), slog.String("stage", c.Labels[LabelStage]), slog.String("attempt", c.Labels[LabelAttempt]))
		case !cerrdefs.IsNotFound(err):
			errs = append(errs, fmt.Errorf("container: remove %s (attempt %s): %w", strings.Join(c.Names, ","), c.Labels[LabelAttempt], err))
		}
	}
	ns, err := d.api.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("container: list networks an earlier attempt left: %w", err))...)
	}
	for _, n := range ns.Items {
		if err := d.removeNetwork(ctx, n.ID); err != nil {
			errs = append(errs, fmt.Errorf("container: remove network %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// removeNetwork removes a stage's network. The engine may still count an
// endpoint of a container it has just removed ("has active endpoints"),
// or a container the stage's dead worker created after the sweep listed
// them may still be attached: every container still on the network is
// disconnected (the network is the stage's alone) and the removal tried
// again, for a few seconds at most.
func (d *Docker) removeNetwork(ctx context.Context, id string) error {
	return retry.Do(ctx, retry.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}, func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		_, err := d.api.NetworkRemove(rctx, id, client.NetworkRemoveOptions{})
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if !cerrdefs.IsConflict(err) && !cerrdefs.IsPermissionDenied(err) && !strings.Contains(err.Error(), "active endpoints") {
			return retry.Permanent(err)
		}
		if in, ierr := d.api.NetworkInspect(rctx, id, client.NetworkInspectOptions{}); ierr == nil {
			for cid := range in.Network.Containers {
				_, _ = d.api.NetworkDisconnect(rctx, id, client.NetworkDisconnectOptions{Container: cid, Force: true})
			}
		}
		return err
	}, retry.GiveUpAfter(networkRemoveWithin))
}

// ensureImage makes sure img is on the engine, as the pull policy says.
func (d *Docker) ensureImage(ctx context.Context, img string) error {
	if d.cfg.Pull != PullAlways {
		ictx, cancel := context.WithTimeout(ctx, apiTimeout)
		_, err := d.api.ImageInspect(ictx, img)
		cancel()
		switch {
		case err == nil:
			return nil
		case !cerrdefs.IsNotFound(err):
			return fmt.Errorf("container: image %s: %w", img, err)
		case d.cfg.Pull == PullNever:
			return executor.CannotStart(fmt.Errorf("container: image %s is not on this host's Docker Engine, and images are never pulled here (container-pull is never): build or load it there first", img))
		}
	}
	if err := d.checkRegistry(ctx, img); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	r, err := d.api.ImagePull(pctx, img, client.ImagePullOptions{})
	if err != nil {
		return fmt.Errorf("container: pull image %s: %w", img, err)
	}
	defer func() { _ = r.Close() }()
	if err := r.Wait(pctx); err != nil {
		return fmt.Errorf("container: pull image %s: %w", img, err)
	}
	return nil
}

// checkRegistry refuses to pull img from a registry on a loopback,
// private, link-local or unspecified address (the engine would call it
// from its host's network, which the stage's network rules do not
// cover), unless the operator lists it in container-registries.
func (d *Docker) checkRegistry(ctx context.Context, img string) error {
	named, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return executor.CannotStart(fmt.Errorf("container: image %s: %w", img, err))
	}
	host := reference.Domain(named)
	if slices.Contains(d.cfg.Registries, host) {
		return nil
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	if slices.Contains(d.cfg.Registries, name) {
		return nil
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(name); err == nil {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, pingTimeout)
		addrs, err = net.DefaultResolver.LookupNetIP(rctx, "ip", name)
		cancel()
		if err != nil {
			return fmt.Errorf("container: image %s: registry %s: %w", img, host, err)
		}
	}
	for _, a := range addrs {
		// The ranges the platform's own outbound requests may not reach
		// either (egress), with nothing allowed.
		var refused *egress.RefusedError
		if err := (*egress.Policy)(nil).Check(a); errors.As(err, &refused) {
			return executor.CannotStart(fmt.Errorf("container: image %s: its registry %s is at %s, %s; images are pulled from such a registry only when the container-registries setting names it", img, host, a, refused.Kind))
		}
	}
	return nil
}

// stage is one opened stage: its network and its services.
type stage struct {
	d        *Docker
	spec     executor.StageSpec
	labels   map[string]string
	network  string
	services []string
	// images are those Open made sure of.
	images map[string]bool
}

// startService starts svc on the stage's network, reachable by its name,
// and waits for it to be healthy when its image declares a health check.
func (s *stage) startService(ctx context.Context, svc executor.Service) error {
	labels := maps.Clone(s.labels)
	labels[LabelService] = svc.Name
	// The run's SLUICE_* variables win over the service's own.
	env := maps.Clone(svc.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, s.spec.Env)
	cfg := &container.Config{Image: svc.Image, Env: environ(env), Labels: labels, Hostname: svc.Name}
	if len(svc.Command) > 0 {
		cfg.Cmd = svc.Command
	}
	name := resourceName("sluice", s.spec.RunID, s.spec.Stage, "svc", svc.Name, random())
	hc := s.d.hostConfig(s.network, nil)
	// A service keeps Docker's default capabilities (a database image
	// starts as root and switches to its own user), without gaining more
	// (no-new-privileges); its log is kept, bounded, for the last lines a
	// failure quotes.
	hc.CapDrop = nil
	hc.LogConfig = container.LogConfig{Type: "local", Config: map[string]string{"max-size": "1m", "max-file": "1", "compress": "false"}}
	c, err := s.d.create(ctx, cfg, hc, &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{s.network: {Aliases: []string{svc.Name}}},
	}, name)
	if err != nil {
		return fmt.Errorf("container: service %q (image %s): %w", svc.Name, svc.Image, err)
	}
	s.services = append(s.services, c.ID)
	sctx, cancel := context.WithTimeout(ctx, apiTimeout)
	_, err = s.d.api.ContainerStart(sctx, c.ID, client.ContainerStartOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("container: start service %q (image %s): %w", svc.Name, svc.Image, err)
	}
	return s.awaitService(ctx, svc, c.ID)
}

// awaitService waits until the service is healthy, if its image declares
// a health check, or has run for serviceSettle otherwise; a service that
// exits or turns unhealthy fails the stage, with its last lines of output.
func (s *stage) awaitService(ctx context.Context, svc executor.Service, id string) error {
	start := time.Now()
	deadline := start.Add(serviceReady)
	for {
		ictx, cancel := context.WithTimeout(ctx, apiTimeout)
		res, err := s.d.api.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
		cancel()
		if err != nil {
			return fmt.Errorf("container: service %q: %w", svc.Name, err)
		}
		in := res.Container
		switch {
		case in.State == nil:
			return fmt.Errorf("container: service %q: the engine reports no state", svc.Name)
		case !in.State.Running:
			return executor.CannotStart(fmt.Errorf("container: service %q (image %s) exited with code %d before the steps started%s", svc.Name, svc.Image, in.State.ExitCode, s.lastLines(ctx, id)))
		case in.State.Health == nil && time.Since(start) >= serviceSettle,
			in.State.Health != nil && in.State.Health.Status == container.Healthy:
			return nil
		case in.State.Health != nil && in.State.Health.Status == container.Unhealthy:
			return executor.CannotStart(fmt.Errorf("container: service %q (image %s) is unhealthy%s", svc.Name, svc.Image, s.lastLines(ctx, id)))
		case time.Now().After(deadline):
			return executor.CannotStart(fmt.Errorf("container: service %q (image %s) was not healthy after %s%s", svc.Name, svc.Image, serviceReady, s.lastLines(ctx, id)))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("container: service %q: %w", svc.Name, context.Cause(ctx))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// lastLines is ": <last lines of id's output>", masked, or "".
func (s *stage) lastLines(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	r, err := s.d.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "10"})
	if err != nil {
		return ""
	}
	defer func() { _ = r.Close() }()
	last := lastlines.New(10, 0)
	out := executor.NewOutput(ctx, executor.Spec{Secrets: s.spec.Secrets, Output: func(_, line string) { last.Add(line) }})
	_, _ = stdcopy.StdCopy(out.Stdout, out.Stderr, io.LimitReader(r, 64<<10))
	_ = out.Close()
	if len(last.Lines()) == 0 {
		return ""
	}
	return ": " + strings.Join(last.Lines(), " | ")
}

// hostConfig bounds a container and keeps it on the stage's network,
// with docker-init as its PID 1 (it hands a stop's SIGTERM to the step
// and reaps what the step leaves), without capabilities, and without a
// log of the engine's: the step's output is read through attach, masked,
// and nothing unmasked is written down.
func (d *Docker) hostConfig(netName string, mounts []mount.Mount) *container.HostConfig {
	pids := int64(d.cfg.Pids)
	withInit := true
	return &container.HostConfig{
		Mounts:      mounts,
		Init:        &withInit,
		LogConfig:   container.LogConfig{Type: "none"},
		NetworkMode: container.NetworkMode(netName),
		Resources: container.Resources{
			NanoCPUs: d.nanoCPUs, Memory: d.memory, MemorySwap: d.memory, PidsLimit: &pids,
		},
		SecurityOpt: []string{"no-new-privileges"},
		CapDrop:     []string{"ALL"},
	}
}

// Run runs spec in a container of spec.Image on the stage's network, with
// the workspace at Workspace and the run's home at Home.
func (s *stage) Run(ctx context.Context, spec executor.Spec) (executor.Result, error) {
	name := strconv.Quote(spec.Name)
	if spec.Image == "" {
		return executor.Result{}, fmt.Errorf("container: step %s names no image", name)
	}
	if err := ctx.Err(); err != nil {
		return executor.Result{}, fmt.Errorf("container: step %s not started: %w", name, err)
	}
	if !s.images[spec.Image] {
		// Open made sure of the images it was told of.
		return executor.Result{}, executor.CannotStart(fmt.Errorf("container: step %s: image %s was not declared when the stage was opened", name, spec.Image))
	}
	binds, err := mounts(spec)
	if err != nil {
		return executor.Result{}, fmt.Errorf("container: step %s: %w", name, err)
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = s.d.defaultTimeout
	}
	labels := maps.Clone(s.labels)
	labels[LabelStep] = spec.Name
	env := map[string]string{"HOME": Home, "TMPDIR": Home + "/tmp", "XDG_CACHE_HOME": Home + "/.cache", "SLUICE_WORKSPACE": Workspace}
	maps.Copy(env, spec.Env)
	cfg := &container.Config{
		Image: spec.Image, Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{spec.Command},
		Env: environ(env), WorkingDir: Workspace, User: s.d.user, Labels: labels,
	}
	cname := resourceName("sluice", s.spec.RunID, s.spec.Stage, spec.Name, random())
	c, err := s.d.create(ctx, cfg, s.d.hostConfig(s.network, binds), nil, cname)
	if err != nil {
		return executor.Result{}, fmt.Errorf("container: step %s (image %s): %w", name, spec.Image, err)
	}
	// Removed whatever happens, even when ctx ended.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if _, err := s.d.api.ContainerRemove(rctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			s.d.log.Warn("container: a step's container was not removed", slog.String("container", cname), slog.Any("error", err))
		}
	}()
	for _, n := range s.d.cfg.Networks {
		nctx, cancel := context.WithTimeout(ctx, apiTimeout)
		_, err := s.d.api.NetworkConnect(nctx, n, client.NetworkConnectOptions{Container: c.ID})
		cancel()
		if err != nil {
			return executor.Result{}, fmt.Errorf("container: step %s: join network %s (container-networks): %w", name, n, err)
		}
	}
	return s.d.run(ctx, spec, c.ID, timeout)
}

// run attaches to the created container id, starts it and waits for it to
// end, within timeout; on timeout or when ctx ends the container is
// stopped (SIGTERM, then SIGKILL after the kill grace).
func (d *Docker) run(ctx context.Context, spec executor.Spec, id string, timeout time.Duration) (executor.Result, error) {
	name := strconv.Quote(spec.Name)
	actx, cancelAttach := context.WithTimeout(ctx, apiTimeout)
	attached, err := d.api.ContainerAttach(actx, id, client.ContainerAttachOptions{Stream: true, Stdout: true, Stderr: true})
	cancelAttach()
	if err != nil {
		return executor.Result{}, fmt.Errorf("container: step %s: attach: %w", name, err)
	}
	att := &attached.HijackedResponse
	defer att.Close()
	out := executor.NewOutput(ctx, spec)
	copied := make(chan error, 1)
	sup := runner.FromContext(ctx)
	go func() {
		copied <- sup.Try("container step output", func() error {
			_, err := stdcopy.StdCopy(out.Stdout, out.Stderr, att.Reader)
			return err
		})
	}()
	// Waiting starts before the container does, so its end is not missed.
	wctx, cancelWait := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWait()
	wait := d.api.ContainerWait(wctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	waited, waitErr := wait.Result, wait.Error
	start := time.Now()
	// Started whatever ctx does meanwhile (the step's output may end it
	// before the answer arrives); the loop below stops it then.
	sctx, cancelStart := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	_, err = d.api.ContainerStart(sctx, id, client.ContainerStartOptions{})
	cancelStart()
	if err != nil {
		return executor.Result{}, fmt.Errorf("container: start step %s (image %s): %w", name, spec.Image, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	res := executor.Result{ExitCode: -1}
	done := ctx.Done()
	// Once stopped, the container must end within the stop's own bound.
	var gone <-chan time.Time
	stop := func() {
		timer.Stop()
		done = nil
		d.stop(ctx, id)
		gone = time.After(cleanupTimeout)
	}
	for {
		select {
		case w := <-waited:
			if w.Error != nil && w.Error.Message != "" {
				return executor.Result{}, fmt.Errorf("container: step %s: wait: %s", name, w.Error.Message)
			}
			if gone == nil {
				res.ExitCode = int(w.StatusCode)
			}
			res.Duration = time.Since(start)
			return d.finish(ctx, spec, id, att, out, copied, res)
		case err := <-waitErr:
			return executor.Result{}, fmt.Errorf("container: step %s: wait: %w", name, err)
		case <-timer.C:
			res.TimedOut = true
			stop()
		case <-done:
			res.Cancelled = true
			stop()
		case <-gone:
			att.Close()
			return executor.Result{}, fmt.Errorf("container: step %s: its container did not end within %s of being stopped", name, cleanupTimeout)
		}
	}
}

// stop stops the container, SIGKILL after the kill grace, however ctx is.
func (d *Docker) stop(ctx context.Context, id string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.killGrace+cleanupTimeout)
	defer cancel()
	secs := int(d.killGrace.Round(time.Second) / time.Second)
	if _, err := d.api.ContainerStop(sctx, id, client.ContainerStopOptions{Signal: "SIGTERM", Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		d.log.Warn("container: a step's container did not stop", slog.String("container", id), slog.Any("error", err))
	}
}

// finish waits for the step's output to end, delivers its last lines, and
// says in the output when the container was killed for its memory.
func (d *Docker) finish(ctx context.Context, spec executor.Spec, id string, att *client.HijackedResponse, out *executor.Output, copied <-chan error, res executor.Result) (executor.Result, error) {
	name := strconv.Quote(spec.Name)
	var copyErr error
	select {
	case copyErr = <-copied:
	case <-time.After(outputDrain):
		// A stream the engine did not close: what came is kept, and the
		// copy ends before the output is closed, so nothing reaches
		// Spec.Output once Run returned.
		att.Close()
		copyErr = <-copied
	}
	outErr := out.Close()
	var panicked *runner.PanicError
	switch {
	case errors.As(copyErr, &panicked):
		return executor.Result{}, fmt.Errorf("container: step %s: output: %w", name, copyErr)
	case outErr != nil:
		return executor.Result{}, fmt.Errorf("container: step %s: output: %w", name, outErr)
	case copyErr != nil && spec.Output != nil:
		// The stream broke: what came before is kept, and the log says
		// that it may end early.
		spec.Output(executor.Stderr, fmt.Sprintf("sluice: the step's output stream broke (%v); its last output may be missing", copyErr))
	}
	if d.oomKilled(ctx, id, res) && spec.Output != nil {
		spec.Output(executor.Stderr, fmt.Sprintf("sluice: the step's container was killed: out of memory (it may use %s; container-memory)", d.cfg.Memory))
	}
	return res, nil
}

// oomKilled says the engine killed the step's container for its memory.
// The engine learns of an OOM kill from an event of its own, which may
// come a moment after the container's exit: a step that died of SIGKILL
// (137) that Sluice did not send is asked about a few times, for up to
// oomWait.
func (d *Docker) oomKilled(ctx context.Context, id string, res executor.Result) bool {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
	defer cancel()
	killed := res.ExitCode == 128+9 && !res.TimedOut && !res.Cancelled
	deadline := time.Now().Add(oomWait)
	for {
		in, err := d.api.ContainerInspect(ictx, id, client.ContainerInspectOptions{})
		switch {
		case err != nil || in.Container.State == nil:
			return false
		case in.Container.State.OOMKilled:
			return true
		case !killed || time.Now().After(deadline):
			return false
		}
		select {
		case <-ictx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// oomWait bounds how long a SIGKILLed step's OOM kill is waited for.
const oomWait = 2 * time.Second

// mounts are the step's workspace and home, the home made first (with its
// tmp) as the process executor makes it.
func mounts(spec executor.Spec) ([]mount.Mount, error) {
	if !filepath.IsAbs(spec.Dir) {
		return nil, fmt.Errorf("workspace %q is not an absolute path", spec.Dir)
	}
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("workspace %s is not a directory", spec.Dir)
	}
	binds := []mount.Mount{{Type: mount.TypeBind, Source: spec.Dir, Target: Workspace}}
	if spec.Home != "" {
		if !filepath.IsAbs(spec.Home) {
			return nil, fmt.Errorf("home %q is not an absolute path", spec.Home)
		}
		if err := os.MkdirAll(filepath.Join(spec.Home, "tmp"), 0o700); err != nil {
			return nil, fmt.Errorf("home: %w", err)
		}
		binds = append(binds, mount.Mount{Type: mount.TypeBind, Source: spec.Home, Target: Home})
	}
	return binds, nil
}

// Close removes the stage's services and network.
func (s *stage) Close(ctx context.Context) error {
	var errs []error
	for _, id := range s.services {
		if _, err := s.d.api.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container: remove a service of the stage: %w", err))
		}
	}
	if err := s.d.removeNetwork(ctx, s.network); err != nil {
		errs = append(errs, fmt.Errorf("container: remove the stage's network %s: %w", s.network, err))
	}
	return errors.Join(errs...)
}

// create creates a container named name; when the call fails (or ctx
// ends) after the engine may have made it, the container is removed by
// name, so nothing it made is left untracked.
func (d *Docker) create(ctx context.Context, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig, name string) (client.ContainerCreateResult, error) {
	cctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	c, err := d.api.ContainerCreate(cctx, client.ContainerCreateOptions{Config: cfg, HostConfig: hc, NetworkingConfig: nc, Name: name})
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
		defer cancel()
		_, _ = d.api.ContainerRemove(rctx, name, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotFound(err) {
			// The engine refuses what was asked (no such network, a
			// setting it does not support): no retry changes that.
			err = executor.CannotStart(err)
		}
	}
	return c, err
}

// environ is env as NAME=VALUE, sorted.
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// resourceName joins parts into a container or network name Docker
// accepts ([a-zA-Z0-9][a-zA-Z0-9_.-]*), at most 128 bytes. A longer name
// is cut before its last part, which is kept whole: the random part that
// keeps names of one step's containers apart (a step's name may be 127
// characters, <pipeline>/<name>).
func resourceName(parts ...string) string {
	const most = 128
	clean := make([]string, len(parts))
	for i, p := range parts {
		var b strings.Builder
		for _, r := range p {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
				b.WriteRune(r)
			default:
				b.WriteByte('_')
			}
		}
		clean[i] = b.String()
	}
	s := strings.Join(clean, "-")
	if len(s) <= most {
		return s
	}
	last := clean[len(clean)-1]
	if len(last) >= most/2 {
		return s[:most]
	}
	return s[:most-len(last)-1] + "-" + last
}

// random is 6 hex digits, so names of retried steps do not collide.
func random() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
