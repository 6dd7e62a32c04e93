package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/platform/secretmask"
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
// every call.
func DefaultPassEnv() []string {
	return []string{
		"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER",
		"GOPATH", "GOCACHE", "GOMODCACHE", "GOPROXY", "GOFLAGS", "GOTOOLCHAIN",
		"GONOSUMDB", "GOPRIVATE", "GOSUMDB",
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
}

var _ Executor = (*Local)(nil)

// Run runs spec and waits for it to finish. See Executor.
func (l *Local) Run(ctx context.Context, spec Spec) (Result, error) {
	name := fmt.Sprintf("%q", spec.Name)
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

	cmd := exec.CommandContext(runCtx, l.shell(), "-c", spec.Command)
	cmd.Dir = spec.Dir
	cmd.Env = l.environ(spec.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// When the step's main process exits, stop waiting for its output after
	// grace; when the context is done, exec kills the main process after
	// grace (we kill the rest of the group below).
	cmd.WaitDelay = grace

	// Cancel is only called by exec while the main process is still
	// running, so a step that exits normally never has its group signalled.
	terminated := make(chan time.Time, 1)
	cmd.Cancel = func() error {
		terminated <- time.Now()
		return signalGroup(cmd.Process.Pid, syscall.SIGTERM)
	}

	var stdout, stderr *lineWriter
	var masked []io.Closer // the maskers in front of stdout and stderr
	if spec.Output != nil {
		sink := &outputSink{fn: spec.Output}
		stdout = newLineWriter(Stdout, sink, MaxLineLen)
		stderr = newLineWriter(Stderr, sink, MaxLineLen)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if m := secretmask.New(spec.Secrets); !m.Empty() {
			// Masking comes before the split into lines, so a secret
			// that spans lines is masked too.
			mo, me := m.Writer(stdout), m.Writer(stderr)
			cmd.Stdout, cmd.Stderr = mo, me
			masked = []io.Closer{mo, me}
		}
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("executor: start step %s: %w", name, err)
	}
	_ = cmd.Wait() // the outcome is read from cmd.ProcessState and the contexts
	if stdout != nil {
		// Wait has returned, so the copying goroutines are done. What the
		// maskers hold back goes to the line writers (which never fail),
		// then their last lines to Output.
		for _, c := range masked {
			_ = c.Close()
		}
		stdout.flush()
		stderr.flush()
	}

	res := Result{ExitCode: -1}
	if cmd.ProcessState != nil {
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
	return res, nil
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
// are set in the worker's environment, then extra (which wins on conflicts).
func (l *Local) environ(extra map[string]string) []string {
	pass := l.PassEnv
	if pass == nil {
		pass = DefaultPassEnv()
	}
	vars := make(map[string]string, len(pass)+len(extra))
	for _, k := range pass {
		if v, ok := os.LookupEnv(k); ok {
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
