package executor_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/executor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// output collects the lines a step writes, per stream.
type output struct {
	mu     sync.Mutex
	stdout []string
	stderr []string
}

func (o *output) add(stream, line string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch stream {
	case executor.Stdout:
		o.stdout = append(o.stdout, line)
	case executor.Stderr:
		o.stderr = append(o.stderr, line)
	default:
		panic("unknown stream " + stream)
	}
}

// run runs command in a temporary directory and returns its result and output.
func run(t *testing.T, l *executor.Local, command string) (executor.Result, *output) {
	t.Helper()
	return runSpec(t, l, executor.Spec{Command: command})
}

// runSpec runs spec, named after the test, in a temporary directory and
// returns its result and output.
func runSpec(t *testing.T, l *executor.Local, spec executor.Spec) (executor.Result, *output) {
	t.Helper()
	out := &output{}
	spec.Name, spec.Dir, spec.Output = t.Name(), t.TempDir(), out.add
	res, err := l.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run(%q): %v", spec.Command, err)
	}
	return res, out
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		command string
		want    int
	}{
		{"true", 0},
		{"false", 1},
		{"exit 3", 3},
		{"exit 255", 255},
		{"sluice-no-such-command-xyz", 127},
		{"kill -9 $$", -1},
	} {
		t.Run(tc.command, func(t *testing.T) {
			res, _ := run(t, &executor.Local{}, tc.command)
			if res.ExitCode != tc.want {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tc.want)
			}
			if res.TimedOut || res.Cancelled {
				t.Errorf("TimedOut=%v Cancelled=%v, want both false", res.TimedOut, res.Cancelled)
			}
			if res.Duration <= 0 {
				t.Errorf("Duration = %v, want > 0", res.Duration)
			}
		})
	}
}

func TestOutputLinesPerStream(t *testing.T) {
	res, out := run(t, &executor.Local{}, `
echo one
echo err-one >&2
echo
echo two
echo err-two >&2
printf 'err-partial' >&2
printf 'three'`)
	if res.ExitCode != 0 {
		t.Fatalf("ExitCode = %d", res.ExitCode)
	}
	if want := []string{"one", "", "two", "three"}; !slices.Equal(out.stdout, want) {
		t.Errorf("stdout = %q, want %q", out.stdout, want)
	}
	if want := []string{"err-one", "err-two", "err-partial"}; !slices.Equal(out.stderr, want) {
		t.Errorf("stderr = %q, want %q", out.stderr, want)
	}
}

func TestNilOutput(t *testing.T) {
	res, err := (&executor.Local{}).Run(context.Background(), executor.Spec{
		Command: "echo ignored; echo ignored >&2; exit 4",
		Dir:     t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 4 {
		t.Errorf("ExitCode = %d, want 4", res.ExitCode)
	}
}

func TestLongLinesAreSplitNotLost(t *testing.T) {
	const n = 3*executor.MaxLineLen + 1000
	_, out := run(t, &executor.Local{}, "head -c "+strconv.Itoa(n)+" /dev/zero | tr '\\0' x; echo; echo after")
	if len(out.stdout) != 5 {
		t.Fatalf("got %d stdout lines, want 5 (4 chunks + after)", len(out.stdout))
	}
	for i, l := range out.stdout[:3] {
		if len(l) != executor.MaxLineLen {
			t.Errorf("chunk %d has %d bytes, want %d", i, len(l), executor.MaxLineLen)
		}
	}
	if got := strings.Join(out.stdout[:4], ""); got != strings.Repeat("x", n) {
		t.Errorf("chunks joined: %d bytes, want %d x's", len(got), n)
	}
	if out.stdout[4] != "after" {
		t.Errorf("last line = %q, want after", out.stdout[4])
	}
}

func TestLineOfExactlyMaxLen(t *testing.T) {
	_, out := run(t, &executor.Local{}, "head -c "+strconv.Itoa(executor.MaxLineLen)+" /dev/zero | tr '\\0' y; echo; echo next")
	if len(out.stdout) != 2 || len(out.stdout[0]) != executor.MaxLineLen || out.stdout[1] != "next" {
		lens := make([]int, len(out.stdout))
		for i, l := range out.stdout {
			lens[i] = len(l)
		}
		t.Fatalf("line lengths = %v, want [%d 4]", lens, executor.MaxLineLen)
	}
}

func TestOutputCallsAreSerialized(t *testing.T) {
	const n = 2000
	var inFlight, overlaps atomic.Int32
	var stdout, stderr []string // only touched inside Output, which must be serialized
	res, err := (&executor.Local{}).Run(context.Background(), executor.Spec{
		Command: "i=0; while [ $i -lt " + strconv.Itoa(n) + " ]; do echo o$i; echo e$i >&2; i=$((i+1)); done",
		Dir:     t.TempDir(),
		Output: func(stream, line string) {
			if inFlight.Add(1) > 1 {
				overlaps.Add(1)
			}
			if stream == executor.Stdout {
				stdout = append(stdout, line)
			} else {
				stderr = append(stderr, line)
			}
			inFlight.Add(-1)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("ExitCode = %d", res.ExitCode)
	}
	if c := overlaps.Load(); c != 0 {
		t.Errorf("Output was called concurrently %d times", c)
	}
	if len(stdout) != n || len(stderr) != n {
		t.Fatalf("got %d stdout and %d stderr lines, want %d each", len(stdout), len(stderr), n)
	}
	for i := range n {
		if stdout[i] != "o"+strconv.Itoa(i) || stderr[i] != "e"+strconv.Itoa(i) {
			t.Fatalf("line %d: stdout %q, stderr %q: out of order", i, stdout[i], stderr[i])
		}
	}
}

func TestEnvIsScrubbed(t *testing.T) {
	t.Setenv("SLUICE_EXECUTOR_TEST_SECRET", "hunter2")
	t.Setenv("HOME", "/home/from-worker")
	t.Setenv("LANG", "C.UTF-8")
	out := &output{}
	res, err := (&executor.Local{}).Run(context.Background(), executor.Spec{
		Command: "env",
		Dir:     t.TempDir(),
		Env:     map[string]string{"STEP_VAR": "a b=c", "HOME": "/home/from-step"},
		Output:  out.add,
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %v, %+v", err, res)
	}
	for _, l := range out.stdout {
		if strings.Contains(l, "SLUICE_EXECUTOR_TEST_SECRET") || strings.Contains(l, "hunter2") {
			t.Errorf("worker secret leaked into the step: %q", l)
		}
	}
	for _, want := range []string{"STEP_VAR=a b=c", "HOME=/home/from-step", "LANG=C.UTF-8"} {
		if !slices.Contains(out.stdout, want) {
			t.Errorf("env lacks %q; got %q", want, out.stdout)
		}
	}
	if p, ok := os.LookupEnv("PATH"); ok && !slices.Contains(out.stdout, "PATH="+p) {
		t.Errorf("PATH not passed through; got %q", out.stdout)
	}
}

func TestPassEnvOverridesDefault(t *testing.T) {
	t.Setenv("SLUICE_EXECUTOR_TEST_PASS", "yes")
	t.Setenv("LANG", "C.UTF-8")
	out := &output{}
	_, err := (&executor.Local{PassEnv: []string{"SLUICE_EXECUTOR_TEST_PASS", "SLUICE_EXECUTOR_TEST_UNSET"}}).Run(
		context.Background(), executor.Spec{Command: "env", Dir: t.TempDir(), Output: out.add})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(out.stdout, "SLUICE_EXECUTOR_TEST_PASS=yes") {
		t.Errorf("env lacks SLUICE_EXECUTOR_TEST_PASS=yes; got %q", out.stdout)
	}
	for _, l := range out.stdout {
		if strings.HasPrefix(l, "LANG=") || strings.HasPrefix(l, "SLUICE_EXECUTOR_TEST_UNSET") {
			t.Errorf("unexpected variable %q", l)
		}
	}
}

func TestDefaultPassEnvReturnsFreshSlice(t *testing.T) {
	a := executor.DefaultPassEnv()
	if !slices.Contains(a, "PATH") || slices.Contains(a, "HOME") || slices.Contains(a, "GOCACHE") {
		t.Fatalf("DefaultPassEnv() = %q", a)
	}
	a[0] = "MUTATED"
	if executor.DefaultPassEnv()[0] == "MUTATED" {
		t.Error("DefaultPassEnv returns shared state")
	}
}

func TestRunsInDir(t *testing.T) {
	dir := t.TempDir()
	out := &output{}
	if _, err := (&executor.Local{}).Run(context.Background(), executor.Spec{Command: "pwd -P", Dir: dir, Output: out.add}); err != nil {
		t.Fatal(err)
	}
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out.stdout, []string{want}) {
		t.Errorf("pwd = %q, want %q", out.stdout, want)
	}
}

func TestStartErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name   string
		local  executor.Local
		ctx    context.Context
		dir    string
		wantIs error
	}{
		{name: "missing dir", dir: filepath.Join(t.TempDir(), "missing"), wantIs: fs.ErrNotExist},
		{name: "dir is a file", dir: file},
		{name: "no dir", dir: ""},
		{name: "missing shell", local: executor.Local{Shell: "/nonexistent/sh"}, dir: t.TempDir(), wantIs: fs.ErrNotExist},
		{name: "cancelled before start", ctx: cancelled, dir: t.TempDir(), wantIs: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			called := false
			_, err := tc.local.Run(ctx, executor.Spec{
				Name: "compile", Command: "echo hi", Dir: tc.dir,
				Output: func(string, string) { called = true },
			})
			if err == nil {
				t.Fatal("Run succeeded, want error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), `"compile"`) {
				t.Errorf("error %q does not name the step", err)
			}
			if called {
				t.Error("the command ran")
			}
		})
	}
}

// backgroundSleep runs in the shell started by Local and prints the pid of a
// grandchild that would run forever.
const backgroundSleep = `sleep 1000 & echo $!; wait`

func TestTimeoutKillsProcessGroup(t *testing.T) {
	out := &output{}
	l := &executor.Local{KillGrace: 5 * time.Second}
	res, err := l.Run(context.Background(), executor.Spec{
		Command: backgroundSleep, Dir: t.TempDir(), Timeout: 2 * time.Second, Output: out.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.Cancelled || res.ExitCode != -1 {
		t.Errorf("result = %+v, want TimedOut, not Cancelled, ExitCode -1", res)
	}
	waitGone(t, grandchildPID(t, out))
}

func TestTimeoutEscalatesToSIGKILL(t *testing.T) {
	out := &output{}
	l := &executor.Local{KillGrace: 200 * time.Millisecond}
	res, err := l.Run(context.Background(), executor.Spec{
		// Both the shell and its child ignore SIGTERM.
		Command: `trap '' TERM; ` + backgroundSleep, Dir: t.TempDir(), Timeout: 2 * time.Second, Output: out.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimedOut || res.ExitCode != -1 {
		t.Errorf("result = %+v, want TimedOut, ExitCode -1", res)
	}
	waitGone(t, grandchildPID(t, out))
}

func TestCancelKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &output{}
	res, err := (&executor.Local{}).Run(ctx, executor.Spec{
		Command: backgroundSleep,
		Dir:     t.TempDir(),
		Output: func(stream, line string) {
			out.add(stream, line)
			cancel() // the grandchild is running: cancel the step
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cancelled || res.TimedOut || res.ExitCode != -1 {
		t.Errorf("result = %+v, want Cancelled, not TimedOut, ExitCode -1", res)
	}
	waitGone(t, grandchildPID(t, out))
}

func TestKeepProcessesLeavesDaemonRunning(t *testing.T) {
	res, out := runSpec(t, &executor.Local{}, executor.Spec{Command: `sleep 1000 >/dev/null 2>&1 & echo $!`, KeepProcesses: true})
	pid := grandchildPID(t, out)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if res.ExitCode != 0 || res.TimedOut || res.Cancelled {
		t.Errorf("result = %+v, want a clean exit", res)
	}
	if processGone(pid) {
		t.Error("the daemon was killed although the step exited normally")
	}
}

func TestDaemonHoldingOutputDoesNotHangRun(t *testing.T) {
	// The background sleep inherits the step's stdout and never closes it.
	res, out := runSpec(t, &executor.Local{KillGrace: 200 * time.Millisecond}, executor.Spec{Command: `sleep 1000 & echo $!`, KeepProcesses: true})
	pid := grandchildPID(t, out)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if res.ExitCode != 0 || res.TimedOut || res.Cancelled {
		t.Errorf("result = %+v, want a clean exit", res)
	}
	if processGone(pid) {
		t.Error("the daemon was killed although the step exited normally")
	}
}

func TestZeroValueLocal(t *testing.T) {
	var l executor.Local
	var ex executor.Executor = &l
	out := &output{}
	res, err := ex.Run(context.Background(), executor.Spec{Command: "echo hi", Dir: t.TempDir(), Output: out.add})
	if err != nil || res.ExitCode != 0 || !slices.Equal(out.stdout, []string{"hi"}) {
		t.Fatalf("Run = %+v, %v, stdout %q", res, err, out.stdout)
	}
}

// grandchildPID returns the pid the step printed as its first stdout line.
func grandchildPID(t *testing.T, out *output) int {
	t.Helper()
	out.mu.Lock()
	defer out.mu.Unlock()
	if len(out.stdout) == 0 {
		t.Fatalf("the step printed no pid (stderr %q)", out.stderr)
	}
	pid, err := strconv.Atoi(out.stdout[0])
	if err != nil || pid <= 0 {
		t.Fatalf("first stdout line %q is not a pid", out.stdout[0])
	}
	return pid
}

// waitGone fails the test if pid is still running after a generous delay.
// (Signals are delivered asynchronously, so give the kernel a moment.)
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d is still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGone reports whether pid has exited. A zombie (exited but not yet
// reaped, for example orphaned under an init that does not reap) counts as
// gone.
func processGone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return true
		}
		return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		state := s[i+2]
		return state == 'Z' || state == 'X'
	}
	return false
}

// A step that names an image is never run on the host by the process
// executor: it is refused as one that cannot start.
func TestLocalRefusesImageSteps(t *testing.T) {
	t.Parallel()
	_, err := (&executor.Local{}).Run(t.Context(), executor.Spec{Name: "x", Image: "golang:1.25", Command: "true", Dir: t.TempDir()})
	if !errors.Is(err, executor.ErrCannotStart) || !strings.Contains(err.Error(), "golang:1.25") {
		t.Fatalf("error %v", err)
	}
}
