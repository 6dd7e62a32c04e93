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
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/sluicehq/sluice/platform/executor"
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
	// pullTimeout bounds pulling one image.
	pullTimeout = 15 * time.Minute
	// cleanupTimeout bounds removing what a stage or step left.
	cleanupTimeout = time.Minute
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
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.Host != "" {
		opts = append(opts, client.WithHost(cfg.Host))
	}
	api, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker engine: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := api.Ping(pctx); err != nil {
		_ = api.Close()
		return nil, fmt.Errorf("docker engine at %s does not answer: %w", api.DaemonHost(), err)
	}
	v, err := api.ServerVersion(pctx)
	if err != nil {
		_ = api.Close()
		return nil, fmt.Errorf("docker engine at %s: %w", api.DaemonHost(), err)
	}
	d := &Docker{api: api, cfg: cfg, user: cfg.User, defaultTimeout: defaultTimeout, killGrace: executor.DefaultKillGrace, log: log}
	// Validate checked them.
	d.nanoCPUs, _ = cfg.nanoCPUs()
	d.memory, _ = cfg.memoryBytes()
	d.labels, _ = cfg.labels()
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
	if err := d.Sweep(ctx, st.RunID, st.Stage); err != nil {
		return nil, err
	}
	images := slices.Sorted(maps.Values(st.Images))
	for _, svc := range st.Services {
		images = append(images, svc.Image)
	}
	for _, img := range slices.Compact(images) {
		if err := d.ensureImage(ctx, img); err != nil {
			return nil, err
		}
	}
	s := &stage{d: d, spec: st, labels: d.stageLabels(st)}
	s.network = resourceName("sluice", st.RunID, st.Stage, strconv.Itoa(st.Attempt))
	opts := network.CreateOptions{Driver: "bridge", Labels: s.labels}
	if !d.cfg.Egress {
		// Internal: nothing routed beyond the bridge. And no address of
		// the host's on it: an internal network still has a default route
		// to its gateway, the host, whose own listeners (a platform on
		// this host) would answer through it.
		opts.Internal = true
		opts.Options = map[string]string{"com.docker.network.bridge.inhibit_ipv4": "true"}
	}
	if _, err := d.api.NetworkCreate(ctx, s.network, opts); err != nil {
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

// Sweep removes the containers and networks of the stage of run (any
// attempt): what a worker that died left running.
func (d *Docker) Sweep(ctx context.Context, run, stage string) error {
	f := filters.NewArgs(filters.Arg("label", LabelRun+"="+run), filters.Arg("label", LabelStage+"="+stage))
	return d.sweep(ctx, f)
}

func (d *Docker) sweep(ctx context.Context, f filters.Args) error {
	cs, err := d.api.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("container: list what an earlier attempt left: %w", err)
	}
	var errs []error
	for _, c := range cs {
		if err := d.api.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container: remove %s (left by %s): %w", strings.Join(c.Names, ","), c.Labels[LabelAttempt], err))
		} else {
			d.log.Info("removed a container an earlier attempt left", slog.String("container", strings.Join(c.Names, ",")),
				slog.String("run_id", c.Labels[LabelRun]), slog.String("stage", c.Labels[LabelStage]), slog.String("attempt", c.Labels[LabelAttempt]))
		}
	}
	ns, err := d.api.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("container: list networks an earlier attempt left: %w", err))...)
	}
	for _, n := range ns {
		if err := d.api.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container: remove network %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}

// ensureImage makes sure img is on the engine, as the pull policy says.
func (d *Docker) ensureImage(ctx context.Context, img string) error {
	if d.cfg.Pull != PullAlways {
		_, err := d.api.ImageInspect(ctx, img)
		switch {
		case err == nil:
			return nil
		case !cerrdefs.IsNotFound(err):
			return fmt.Errorf("container: image %s: %w", img, err)
		case d.cfg.Pull == PullNever:
			return fmt.Errorf("container: image %s is not on this host's Docker Engine, and images are never pulled here (container-pull is never): build or load it there first", img)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	r, err := d.api.ImagePull(pctx, img, image.PullOptions{})
	if err != nil {
		return fmt.Errorf("container: pull image %s: %w", img, err)
	}
	defer func() { _ = r.Close() }()
	if err := jsonmessage.DisplayJSONMessagesStream(r, io.Discard, 0, false, nil); err != nil {
		return fmt.Errorf("container: pull image %s: %w", img, err)
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
}

// startService starts svc on the stage's network, reachable by its name,
// and waits for it to be healthy when its image declares a health check.
func (s *stage) startService(ctx context.Context, svc executor.Service) error {
	labels := maps.Clone(s.labels)
	labels[LabelService] = svc.Name
	env := maps.Clone(s.spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	maps.Copy(env, svc.Env)
	cfg := &container.Config{Image: svc.Image, Env: environ(env), Labels: labels, Hostname: svc.Name}
	if len(svc.Command) > 0 {
		cfg.Cmd = svc.Command
	}
	name := resourceName("sluice", s.spec.RunID, s.spec.Stage, "svc", svc.Name, random())
	c, err := s.d.api.ContainerCreate(ctx, cfg, s.d.hostConfig(s.network, nil), &network.NetworkingConfig{
		EndpointsConfig: map[string]*network.EndpointSettings{s.network: {Aliases: []string{svc.Name}}},
	}, nil, name)
	if err != nil {
		return fmt.Errorf("container: service %q (image %s): %w", svc.Name, svc.Image, err)
	}
	s.services = append(s.services, c.ID)
	if err := s.d.api.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
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
		in, err := s.d.api.ContainerInspect(ctx, id)
		if err != nil {
			return fmt.Errorf("container: service %q: %w", svc.Name, err)
		}
		switch {
		case in.State == nil:
			return fmt.Errorf("container: service %q: the engine reports no state", svc.Name)
		case !in.State.Running:
			return fmt.Errorf("container: service %q (image %s) exited with code %d before the steps started%s", svc.Name, svc.Image, in.State.ExitCode, s.lastLines(ctx, id))
		case in.State.Health == nil && time.Since(start) >= serviceSettle,
			in.State.Health != nil && in.State.Health.Status == container.Healthy:
			return nil
		case in.State.Health != nil && in.State.Health.Status == container.Unhealthy:
			return fmt.Errorf("container: service %q (image %s) is unhealthy%s", svc.Name, svc.Image, s.lastLines(ctx, id))
		case time.Now().After(deadline):
			return fmt.Errorf("container: service %q (image %s) was not healthy after %s%s", svc.Name, svc.Image, serviceReady, s.lastLines(ctx, id))
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
	r, err := s.d.api.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "10"})
	if err != nil {
		return ""
	}
	defer func() { _ = r.Close() }()
	var lines []string
	out := executor.NewOutput(ctx, executor.Spec{Secrets: s.spec.Secrets, Output: func(_, line string) { lines = append(lines, line) }})
	_, _ = stdcopy.StdCopy(out.Stdout, out.Stderr, io.LimitReader(r, 64<<10))
	_ = out.Close()
	if len(lines) == 0 {
		return ""
	}
	return ": " + strings.Join(lines, " | ")
}

// hostConfig bounds a container and keeps it on the stage's network.
func (d *Docker) hostConfig(net string, binds []string) *container.HostConfig {
	pids := int64(d.cfg.Pids)
	return &container.HostConfig{
		Binds:       binds,
		NetworkMode: container.NetworkMode(net),
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
	if err := s.d.ensureImage(ctx, spec.Image); err != nil {
		return executor.Result{}, err
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
	c, err := s.d.api.ContainerCreate(ctx, cfg, s.d.hostConfig(s.network, binds), nil, nil, cname)
	if err != nil {
		return executor.Result{}, fmt.Errorf("container: step %s (image %s): %w", name, spec.Image, err)
	}
	// Removed whatever happens, even when ctx ended.
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := s.d.api.ContainerRemove(rctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			s.d.log.Warn("container: a step's container was not removed", slog.String("container", cname), slog.Any("error", err))
		}
	}()
	for _, n := range s.d.cfg.Networks {
		if err := s.d.api.NetworkConnect(ctx, n, c.ID, nil); err != nil {
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
	att, err := d.api.ContainerAttach(ctx, id, container.AttachOptions{Stream: true, Stdout: true, Stderr: true})
	if err != nil {
		return executor.Result{}, fmt.Errorf("container: step %s: attach: %w", name, err)
	}
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
	waited, waitErr := d.api.ContainerWait(wctx, id, container.WaitConditionNextExit)
	start := time.Now()
	// Started whatever ctx does meanwhile (the step's output may end it
	// before the answer arrives); the loop below stops it then.
	sctx, cancelStart := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	err = d.api.ContainerStart(sctx, id, container.StartOptions{})
	cancelStart()
	if err != nil {
		return executor.Result{}, fmt.Errorf("container: start step %s (image %s): %w", name, spec.Image, err)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	res := executor.Result{ExitCode: -1}
	stopped := false
	for {
		select {
		case w := <-waited:
			if w.Error != nil && w.Error.Message != "" {
				return executor.Result{}, fmt.Errorf("container: step %s: wait: %s", name, w.Error.Message)
			}
			if !stopped {
				res.ExitCode = int(w.StatusCode)
			}
			res.Duration = time.Since(start)
			return d.finish(ctx, spec, id, out, copied, res)
		case err := <-waitErr:
			return executor.Result{}, fmt.Errorf("container: step %s: wait: %w", name, err)
		case <-timer.C:
			res.TimedOut, stopped = true, true
			d.stop(ctx, id)
		case <-ctx.Done():
			if !stopped {
				res.Cancelled, stopped = true, true
				d.stop(ctx, id)
			}
		}
	}
}

// stop stops the container, SIGKILL after the kill grace, however ctx is.
func (d *Docker) stop(ctx context.Context, id string) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.killGrace+cleanupTimeout)
	defer cancel()
	secs := int(d.killGrace.Round(time.Second) / time.Second)
	if err := d.api.ContainerStop(sctx, id, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		d.log.Warn("container: a step's container did not stop", slog.String("container", id), slog.Any("error", err))
	}
}

// finish waits for the step's output to end, delivers its last lines, and
// says in the output when the container was killed for its memory.
func (d *Docker) finish(ctx context.Context, spec executor.Spec, id string, out *executor.Output, copied <-chan error, res executor.Result) (executor.Result, error) {
	name := strconv.Quote(spec.Name)
	var copyErr error
	select {
	case copyErr = <-copied:
	case <-time.After(outputDrain):
		// A stream the engine did not close: what came is kept.
	}
	outErr := out.Close()
	var panicked *runner.PanicError
	switch {
	case errors.As(copyErr, &panicked):
		return executor.Result{}, fmt.Errorf("container: step %s: output: %w", name, copyErr)
	case outErr != nil:
		return executor.Result{}, fmt.Errorf("container: step %s: output: %w", name, outErr)
	}
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if in, err := d.api.ContainerInspect(ictx, id); err == nil && in.State != nil && in.State.OOMKilled && spec.Output != nil {
		spec.Output(executor.Stderr, fmt.Sprintf("sluice: the step's container was killed: out of memory (it may use %s; container-memory)", d.cfg.Memory))
	}
	return res, nil
}

// mounts are the step's workspace and home, the home made first (with its
// tmp) as the process executor makes it.
func mounts(spec executor.Spec) ([]string, error) {
	if !filepath.IsAbs(spec.Dir) {
		return nil, fmt.Errorf("workspace %q is not an absolute path", spec.Dir)
	}
	if fi, err := os.Stat(spec.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("workspace %s is not a directory", spec.Dir)
	}
	binds := []string{spec.Dir + ":" + Workspace}
	if spec.Home != "" {
		if !filepath.IsAbs(spec.Home) {
			return nil, fmt.Errorf("home %q is not an absolute path", spec.Home)
		}
		if err := os.MkdirAll(filepath.Join(spec.Home, "tmp"), 0o700); err != nil {
			return nil, fmt.Errorf("home: %w", err)
		}
		binds = append(binds, spec.Home+":"+Home)
	}
	return binds, nil
}

// Close removes the stage's services and network.
func (s *stage) Close(ctx context.Context) error {
	var errs []error
	for _, id := range s.services {
		if err := s.d.api.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("container: remove a service of the stage: %w", err))
		}
	}
	if err := s.d.api.NetworkRemove(ctx, s.network); err != nil && !cerrdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("container: remove the stage's network %s: %w", s.network, err))
	}
	return errors.Join(errs...)
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
// accepts ([a-zA-Z0-9][a-zA-Z0-9_.-]*), at most 128 bytes.
func resourceName(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('-')
		}
		for _, r := range p {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
				b.WriteRune(r)
			default:
				b.WriteByte('_')
			}
		}
	}
	s := b.String()
	if len(s) > 128 {
		s = s[:128]
	}
	return s
}

// random is 6 hex digits, so names of retried steps do not collide.
func random() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
