package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/platform/executor/internal/supervisor"
	"github.com/sluicehq/sluice/platform/runner"
)

// Defaults used by Local when the corresponding field is zero.
const (
	DefaultShell     = "/bin/sh"
	DefaultTimeout   = 30 * time.Minute
	DefaultKillGrace = 5 * time.Second
)

// groupPollInterval is how often Run checks whether a terminated process
// group is gone.
const groupPollInterval = 20 * time.Millisecond

// DefaultPassEnv returns the names of the worker environment variables that
// Local passes to steps when Local.PassEnv is nil. It returns a new slice on
// every call. HOME, TMPDIR and the caches are the run's own (see
// Spec.Home), never the worker's.
func DefaultPassEnv() []string {
	return []string{
		"PATH", "LANG", "LC_ALL", "TZ", "USER",
		"GOPROXY", "GOFLAGS", "GOTOOLCHAIN", "GONOSUMDB", "GOPRIVATE", "GOSUMDB",
	}
}

// Local runs steps as processes on this machine. The zero value is ready to
// use.
//
// Each step runs in its own process group with a scrubbed environment: only
// the variables named in PassEnv that are set in the worker's environment,
// plus Spec.Env. Nothing else of the worker's environment (credentials in
// particular) reaches the step.
//
// On timeout or cancellation the whole process group gets SIGTERM, then
// SIGKILL once KillGrace has passed if any member is still alive, so
// processes the step started in the background are stopped too.
//
// When the step's main process exits on its own, the group is NOT killed:
// a deploy step may legitimately leave a daemon running. Such a daemon must
// redirect its stdout and stderr (for example `server >server.log 2>&1 &`).
// If it keeps the step's output open instead, Run waits KillGrace for the
// output to close, then closes its end of the pipes and returns; the daemon
// keeps running but its further output is lost (and may get SIGPIPE).
type Local struct {
	// Shell runs Spec.Command as `Shell -c Command`; default DefaultShell.
	Shell string
	// DefaultTimeout applies to specs without a Timeout; default DefaultTimeout.
	DefaultTimeout time.Duration
	// PassEnv names the worker environment variables passed to steps;
	// DefaultPassEnv() when nil. An empty non-nil slice passes nothing.
	PassEnv []string
	// KillGrace is the time between SIGTERM and SIGKILL to the process
	// group, and how long Run waits for output to close after the step's
	// main process exits; default DefaultKillGrace.
	KillGrace time.Duration
	// Isolation keeps steps from the platform; the zero value is the
	// sandbox (see Isolation).
	Isolation Isolation
}

// NewLocal is the executor a service runs its steps with: it checks that
// the sandbox can run here (see Probe), logs how steps are isolated and
// protects this process (Protect).
func NewLocal(iso Isolation, defaultTimeout time.Duration, log *slog.Logger) (*Local, error) {
	if err := iso.Validate(); err != nil {
		return nil, err
	}
	if iso.Sandboxed() {
		r, err := Probe()
		if err != nil {
			return nil, err
		}
		log.Info("steps run in the step sandbox", slog.String("sandbox", r.String()), slog.Any("read_paths", iso.ReadPaths), slog.Any("write_paths", iso.WritePaths))
	} else {
		log.Warn("step isolation is off: steps run as this service's user and can read what it can read")
	}
	if err := Protect(); err != nil {
		return nil, err
	}
	return &Local{DefaultTimeout: defaultTimeout, Isolation: iso}, nil
}

var _ Executor = (*Local)(nil)

// Run runs spec and waits for it to finish. See Executor.
func (l *Local) Run(ctx context.Context, spec Spec) (Result, error) {
	name := fmt.Sprintf("%q", spec.Name)
	if spec.Image != "" {
		return Result{}, CannotStart(fmt.Errorf("executor: step %s names an image (%s), and the process executor runs none", name, spec.Image))
	}
	if err := checkDir(spec.Dir); err != nil {
		return Result{}, fmt.Errorf("executor: step %s: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("executor: step %s not started: %w", name, err)
	}

	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = l.defaultTimeout()
	}
	grace := l.killGrace()
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	home, cleanup, err := prepareHome(spec.Home)
	if err != nil {
		return Result{}, fmt.Errorf("executor: step %s: %w", name, err)
	}
	defer cleanup()
	env := l.environ(spec.Env, home)
	var cmd *exec.Cmd
	var status *supervisorStatus
	if l.Isolation.Sandboxed() {
		// The supervisor starts the shell; find it here, so a missing one
		// is an error the caller can tell apart.
		if _, err := os.Stat(l.shell()); err != nil {
			return Result{}, CannotStart(fmt.Errorf("executor: start step %s: shell: %w", name, err))
		}
		cmd, status, err = l.supervised(runCtx, spec, env, home, grace)
		if err != nil {
			return Result{}, fmt.Errorf("executor: step %s: %w", name, err)
		}
		defer status.close()
	} else {
		cmd = exec.CommandContext(runCtx, l.shell(), "-c", spec.Command)
		cmd.Dir = spec.Dir
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		// When the step's main process exits, stop waiting for its output
		// after grace; when the context is done, exec kills the main
		// process after grace (we kill the rest of the group below).
		cmd.WaitDelay = grace
	}

	// Cancel is only called by exec while the main process is still
	// running, so a step that exits normally never has its group signalled.
	// A supervised step's supervisor stops everything the step started.
	terminated := make(chan time.Time, 1)
	cmd.Cancel = func() error {
		terminated <- time.Now()
		if status != nil {
			return cmd.Process.Signal(syscall.SIGTERM)
		}
		return signalGroup(cmd.Process.Pid, syscall.SIGTERM)
	}

	output := NewOutput(ctx, spec)
	if spec.Output != nil {
		// exec copies the output in goroutines of its own.
		cmd.Stdout, cmd.Stderr = output.Stdout, output.Stderr
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("executor: start step %s: %w", name, err)
	}
	status.started()
	_ = cmd.Wait() // the outcome is read from cmd.ProcessState and the contexts
	// Wait has returned, so the copying goroutines are done.
	outputErr := output.Close()

	res := Result{ExitCode: -1}
	switch {
	case status != nil:
		code, err := status.outcome()
		if err != nil {
			return Result{}, fmt.Errorf("executor: start step %s: %w", name, err)
		}
		res.ExitCode = code
	case cmd.ProcessState != nil:
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	select {
	case termAt := <-terminated:
		killGroup(cmd.Process.Pid, termAt.Add(grace))
		res.ExitCode = -1
		if ctx.Err() != nil {
			res.Cancelled = true
		} else {
			res.TimedOut = true
		}
	default:
	}
	res.Duration = time.Since(start)
	if outputErr != nil {
		return Result{}, fmt.Errorf("executor: step %s: output: %w", name, outputErr)
	}
	return res, nil
}

// outputGuard runs what exec's goroutines that copy a step's output call
// (the maskers, the line writers, Spec.Output) under a Supervisor: a panic
// there is counted and ends the step's output, whose rest is read and
// dropped so that the step does not block on it, and Run fails with the
// panic once the step ended.
type outputGuard struct {
	sup *runner.Supervisor
	mu  sync.Mutex
	err error
}

// run runs fn unless an earlier call panicked, and reports whether it ran
// to its end.
func (g *outputGuard) run(fn func()) bool {
	if g.failure() != nil {
		return false
	}
	err := g.sup.Try("step output", func() error { fn(); return nil })
	if err == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil {
		g.err = err
	}
	return false
}

func (g *outputGuard) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *outputGuard) writer(w io.Writer) io.Writer { return guardedWriter{g: g, w: w} }

type guardedWriter struct {
	g *outputGuard
	w io.Writer
}

func (w guardedWriter) Write(p []byte) (n int, err error) {
	if !w.g.run(func() { n, err = w.w.Write(p) }) {
		return len(p), nil // dropped
	}
	return n, err
}

// killGroup waits until the process group pgid is empty or deadline has
// passed, then sends SIGKILL to whatever is left of it. Exited processes
// that nobody has reaped yet still count as members, so under an init that
// reaps orphans slowly Run may take up to KillGrace to return.
func killGroup(pgid int, deadline time.Time) {
	for groupAlive(pgid) && time.Now().Before(deadline) {
		time.Sleep(groupPollInterval)
	}
	if groupAlive(pgid) {
		_ = signalGroup(pgid, syscall.SIGKILL)
	}
}

// groupAlive reports whether any process (including zombies not yet reaped
// by their parent) is left in the process group pgid.
func groupAlive(pgid int) bool {
	return !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}

func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return fmt.Errorf("signal process group %d: %w", pgid, err)
	}
	return nil
}

func checkDir(dir string) error {
	if dir == "" {
		return errors.New("working directory not set")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("working directory %s is not a directory", dir)
	}
	return nil
}

// environ builds the step's environment: the passed-through variables that
// are set in the worker's environment, then the run's home (HOME, TMPDIR,
// XDG_CACHE_HOME), then Isolation.Env, then extra (which wins on
// conflicts).
func (l *Local) environ(extra map[string]string, home string) []string {
	pass := l.PassEnv
	if pass == nil {
		pass = DefaultPassEnv()
	}
	vars := make(map[string]string, len(pass)+len(extra)+3)
	for _, k := range pass {
		if v, ok := os.LookupEnv(k); ok {
			vars[k] = v
		}
	}
	vars["HOME"] = home
	vars["TMPDIR"] = filepath.Join(home, "tmp")
	vars["XDG_CACHE_HOME"] = filepath.Join(home, ".cache")
	for _, kv := range l.Isolation.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	for k, v := range extra {
		vars[k] = v
	}
	env := make([]string, 0, len(vars)) // non-nil: exec must not inherit os.Environ
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// prepareHome makes the step's home and its tmp directory (0700). An empty
// dir gets a temporary home that cleanup removes; a given one is the
// caller's to remove.
func prepareHome(dir string) (home string, cleanup func(), err error) {
	cleanup = func() {}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "sluice-step-home-"); err != nil {
			return "", nil, fmt.Errorf("home: %w", err)
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
	}
	if !filepath.IsAbs(dir) {
		return "", nil, fmt.Errorf("home %q is not an absolute path", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("home: %w", err)
	}
	return dir, cleanup, nil
}

// supervised is the command that runs spec under the supervisor (see
// Isolation), and the pipe the supervisor reports on.
func (l *Local) supervised(ctx context.Context, spec Spec, env []string, home string, grace time.Duration) (*exec.Cmd, *supervisorStatus, error) {
	sup := supervisor.Spec{
		Shell: l.shell(), Command: spec.Command, Dir: spec.Dir, Env: env,
		Read:  l.Isolation.readPaths(),
		Write: l.Isolation.writePaths(spec, home),
		Keep:  spec.KeepProcesses, Grace: grace,
	}
	body, err := json.Marshal(sup)
	if err != nil {
		return nil, nil, fmt.Errorf("step sandbox: %w", err)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("step sandbox: %w", err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		_, _ = specR.Close(), specW.Close()
		return nil, nil, fmt.Errorf("step sandbox: %w", err)
	}
	st := &supervisorStatus{
		spec: specW, body: body, r: statusR, w: statusW, specR: specR,
		sup: runner.FromContext(ctx), done: make(chan struct{}), panicked: make(chan error, 2),
	}
	// /proc/self/exe is this very binary even if its file was replaced
	// since the service started.
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{supervisor.Arg0}
	// GORACE: a binary built with the race detector (the services'
	// tests) otherwise sleeps a second on exit, which every step would
	// pay; other binaries ignore it.
	cmd.Env = []string{supervisor.EnvName + "=" + supervisor.EnvValue, "GORACE=atexit_sleep_ms=0"}
	cmd.Dir = spec.Dir
	cmd.ExtraFiles = []*os.File{specR, statusW}
	// Its own session, so a terminal's signals do not reach the step; if
	// the service dies, the supervisor stops the step.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	// The supervisor takes up to grace to stop a step; exec kills it after
	// that and a second more.
	cmd.WaitDelay = grace + time.Second
	return cmd, st, nil
}

// supervisorStatus is the service's end of the supervisor's pipes.
type supervisorStatus struct {
	spec   io.WriteCloser
	specR  io.Closer
	w      io.Closer
	body   []byte
	r      io.ReadCloser
	sup    *runner.Supervisor
	done   chan struct{}
	report []byte
	// panicked has the panics of the goroutines that write the spec and
	// read the report.
	panicked chan error
}

// started hands the supervisor its step and starts reading its report;
// call it once the supervisor has started.
func (s *supervisorStatus) started() {
	if s == nil {
		return
	}
	// The supervisor has its copies now.
	_, _ = s.specR.Close(), s.w.Close()
	go func() {
		// A failed write is the supervisor's to report.
		s.panicked <- s.sup.Try("step spec writer", func() error {
			defer func() { _ = s.spec.Close() }() // the supervisor reads to the end
			_, _ = s.spec.Write(s.body)
			return nil
		})
	}()
	go func() {
		defer close(s.done)
		s.panicked <- s.sup.Try("step report reader", func() error {
			s.report, _ = io.ReadAll(io.LimitReader(s.r, 64<<10))
			return nil
		})
	}()
}

// outcome is the step's exit code (-1 when a signal ended it), or why the
// step did not start. Call it after the supervisor has exited.
func (s *supervisorStatus) outcome() (int, error) {
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		// A process the step left with the pipe open: impossible, the
		// supervisor closes it on exec; do not hang on it anyway.
		return -1, nil
	}
	// The report read, the spec was written long before: a panic of either
	// is the step's failure.
	for range len(s.panicked) {
		if err := <-s.panicked; err != nil {
			return -1, fmt.Errorf("step sandbox: %w", err)
		}
	}
	line := strings.TrimSpace(string(s.report))
	switch {
	case strings.HasPrefix(line, "exit "):
		code, err := strconv.Atoi(strings.TrimPrefix(line, "exit "))
		if err != nil {
			return -1, fmt.Errorf("step sandbox: report %q", line)
		}
		return code, nil
	case strings.HasPrefix(line, "signal "):
		return -1, nil
	case strings.HasPrefix(line, "error: "):
		return -1, errors.New(strings.TrimPrefix(line, "error: "))
	case line == "":
		// Killed before it could say anything (after a stop, exec kills a
		// supervisor that does not end in time).
		return -1, nil
	default:
		return -1, fmt.Errorf("step sandbox: report %q", line)
	}
}

func (s *supervisorStatus) close() {
	_, _, _, _ = s.spec.Close(), s.specR.Close(), s.w.Close(), s.r.Close()
}

func (l *Local) shell() string {
	if l.Shell == "" {
		return DefaultShell
	}
	return l.Shell
}

func (l *Local) defaultTimeout() time.Duration {
	if l.DefaultTimeout <= 0 {
		return DefaultTimeout
	}
	return l.DefaultTimeout
}

func (l *Local) killGrace() time.Duration {
	if l.KillGrace <= 0 {
		return DefaultKillGrace
	}
	return l.KillGrace
}
