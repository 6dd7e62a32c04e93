package executor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
)

// sandboxed is the executor the services use, failing the test where the
// kernel cannot run the sandbox (CI's can: that must not pass silently).
func sandboxed(t *testing.T, iso executor.Isolation) *executor.Local {
	t.Helper()
	l, err := executor.NewLocal(iso, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l.KillGrace = 500 * time.Millisecond
	return l
}

// tryStep runs command in a fresh workspace and returns the result and
// everything it printed, one string.
func tryStep(t *testing.T, l *executor.Local, spec executor.Spec) (executor.Result, string) {
	t.Helper()
	out := &output{}
	if spec.Dir == "" {
		spec.Dir = t.TempDir()
	}
	spec.Name, spec.Output = t.Name(), out.add
	res, err := l.Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run(%q): %v", spec.Command, err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	return res, strings.Join(slices.Concat(out.stdout, out.stderr), "\n")
}

func TestSandboxKeepsTheServicesFilesAway(t *testing.T) {
	l := sandboxed(t, executor.Isolation{})
	// The layout of a service's data directory: its database next to the
	// workspaces.
	data := t.TempDir()
	db := filepath.Join(data, "build.db")
	if err := os.WriteFile(db, []byte("canary-database-0451"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(data, "workspaces", "other-run")
	ws := filepath.Join(data, "workspaces", "run-1")
	for _, d := range []string{other, ws} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(other, "secret.txt"), []byte("canary-other-run-0451"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`
cat %[1]s; cat ../../build.db; cat ../other-run/secret.txt; ls ../..
echo planted > %[2]s/planted || echo "write outside refused"
echo mine > built.txt && cat built.txt
echo cached > "$HOME/cache.txt" && echo "home $HOME"
echo t > "$TMPDIR/t" && echo "tmp ok"
mkdir a b && echo f > a/f && ln a/f b/f && mv a/f b/g && echo "linked and moved"
`, db, data)
	res, out := tryStep(t, l, executor.Spec{Command: script, Dir: ws, Home: ws + ".home"})
	if res.ExitCode != 0 {
		t.Errorf("exit code %d; output:\n%s", res.ExitCode, out)
	}
	for _, canary := range []string{"canary-database-0451", "canary-other-run-0451"} {
		if strings.Contains(out, canary) {
			t.Errorf("the step read %q:\n%s", canary, out)
		}
	}
	if _, err := os.Stat(filepath.Join(data, "planted")); err == nil {
		t.Error("the step wrote into the data directory")
	}
	for _, want := range []string{"cannot open directory '../..'", "write outside refused", "mine", "home " + ws + ".home", "tmp ok", "linked and moved"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSandboxKeepsTheServiceProcessAway(t *testing.T) {
	t.Setenv("SLUICE_TEST_SERVICE_CANARY", "canary-environ-0451")
	l := sandboxed(t, executor.Isolation{}) // also protects this process
	pid := strconv.Itoa(os.Getpid())
	script := `
cat /proc/` + pid + `/environ && echo "read environ"
head -c 16 /proc/` + pid + `/mem >/dev/null 2>&1 && echo "read memory"
readlink /proc/` + pid + `/cwd && echo "read the working directory"
cat /proc/` + pid + `/fd/0 </dev/null >/dev/null 2>&1 && echo "opened a descriptor"
kill -0 ` + pid + ` 2>/dev/null && echo "signalled the service"
grep CapEff /proc/self/status
true`
	_, out := tryStep(t, l, executor.Spec{Command: script})
	for _, bad := range []string{"canary-environ-0451", "read environ", "read memory", "read the working directory", "opened a descriptor", "signalled the service"} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %q:\n%s", bad, out)
		}
	}
	if !strings.Contains(out, "CapEff:\t0000000000000000") {
		t.Errorf("the step has capabilities:\n%s", out)
	}
}

// The supervisor (the step's parent) is as far out of reach as the
// service: its threads other than the one that started the step are not
// confined, so reading or writing its memory would undo the sandbox.
func TestSandboxKeepsTheSupervisorAway(t *testing.T) {
	l := sandboxed(t, executor.Isolation{})
	script := `
sup=$PPID
tr '\0' '\n' < /proc/$sup/environ && echo "read the supervisor's environ"
head -c 16 /proc/$sup/mem >/dev/null 2>&1 && echo "read the supervisor's memory"
readlink /proc/$sup/fd/1 && echo "read the supervisor's descriptors"
true`
	_, out := tryStep(t, l, executor.Spec{Command: script})
	for _, bad := range []string{"SLUICE_STEP_SUPERVISOR", "read the supervisor's environ", "read the supervisor's memory", "read the supervisor's descriptors"} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %q:\n%s", bad, out)
		}
	}
}

func TestSandboxKillsWhatTheStepLeaves(t *testing.T) {
	l := sandboxed(t, executor.Isolation{})
	// A daemon in a session of its own, started through a shell that exits
	// at once, so it is nobody's child and in no group of the step's.
	_, out := tryStep(t, l, executor.Spec{Command: `setsid sh -c 'sleep 1000 >/dev/null 2>&1 </dev/null & echo $!' ; sleep 1000 >/dev/null 2>&1 & echo $!`})
	lines := strings.Fields(out)
	if len(lines) != 2 {
		t.Fatalf("want two pids, got %q", out)
	}
	for _, l := range lines {
		pid, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("%q is not a pid", l)
		}
		waitGone(t, pid)
	}
}

func TestSandboxKillsSetsidDaemonsOnTimeout(t *testing.T) {
	l := sandboxed(t, executor.Isolation{})
	res, out := tryStep(t, l, executor.Spec{
		Command: `setsid sh -c 'trap "" TERM; sleep 1000 >/dev/null 2>&1 </dev/null & echo $!'; sleep 1000`,
		Timeout: time.Second,
	})
	if !res.TimedOut {
		t.Errorf("result %+v, want a timeout", res)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("%q is not a pid", out)
	}
	waitGone(t, pid)
}

func TestSandboxKeepProcesses(t *testing.T) {
	l := sandboxed(t, executor.Isolation{})
	res, out := tryStep(t, l, executor.Spec{Command: `setsid sleep 1000 >/dev/null 2>&1 </dev/null & echo $!`, KeepProcesses: true})
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("%q is not a pid", out)
	}
	t.Cleanup(func() { _ = syscallKill(pid) })
	if res.ExitCode != 0 || processGone(pid) {
		t.Errorf("result %+v; the daemon of a step that keeps its processes is gone", res)
	}
}

func TestSandboxPaths(t *testing.T) {
	shared, tool := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(tool, "tool"), []byte("#!/bin/sh\necho tool ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	l := sandboxed(t, executor.Isolation{ReadPaths: []string{tool}, WritePaths: []string{shared}})
	script := fmt.Sprintf(`%s/tool; echo s > %s/s && echo shared ok; echo w > %s/w && echo state ok; echo x > %s/x || echo "tool dir read-only"`, tool, shared, state, tool)
	res, out := tryStep(t, l, executor.Spec{Command: script, Writable: []string{state}})
	if res.ExitCode != 0 {
		t.Errorf("exit %d:\n%s", res.ExitCode, out)
	}
	for _, want := range []string{"tool ran", "shared ok", "state ok", "tool dir read-only"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestSandboxSetupFailureIsAStartError(t *testing.T) {
	l := sandboxed(t, executor.Isolation{})
	ran := filepath.Join(t.TempDir(), "ran")
	_, err := l.Run(context.Background(), executor.Spec{
		Name: "deploy", Command: "touch " + ran, Dir: t.TempDir(),
		Writable: []string{filepath.Join(t.TempDir(), "missing")},
	})
	if err == nil || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), `"deploy"`) {
		t.Errorf("err = %v, want a start error naming the step and the missing directory", err)
	}
	if _, statErr := os.Stat(ran); !errors.Is(statErr, os.ErrNotExist) {
		t.Error("the command ran")
	}
}

func TestIsolationValidate(t *testing.T) {
	for _, tc := range []struct {
		iso  executor.Isolation
		want string
	}{
		{executor.Isolation{Mode: "chroot"}, `step-isolation: "chroot"`},
		{executor.Isolation{ReadPaths: []string{"rel/path"}}, `step-read-paths: "rel/path"`},
		{executor.Isolation{WritePaths: []string{"cache"}}, `step-write-paths: "cache"`},
	} {
		if err := tc.iso.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.iso, err, tc.want)
		}
	}
	if err := (executor.Isolation{Mode: executor.IsolationOff, ReadPaths: []string{"/opt/go"}}).Validate(); err != nil {
		t.Error(err)
	}
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// Two runs' steps at once: neither reads the other's environment, where
// its secrets are.
func TestSandboxKeepsRunsApart(t *testing.T) {
	l := sandboxed(t, executor.Isolation{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	ready := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = l.Run(context.Background(), executor.Spec{
			Name: "victim", Dir: t.TempDir(), Timeout: 20 * time.Second,
			Env:      map[string]string{"RUN_SECRET": "canary-other-run-0452"},
			Writable: []string{filepath.Dir(pidFile)},
			Command:  `echo $$ > ` + pidFile + `; exec sleep 30`,
			Output:   func(string, string) {},
		})
	}()
	go func() {
		defer close(ready)
		for range 200 {
			if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
	}()
	<-ready
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(b))
	_, out := tryStep(t, l, executor.Spec{Command: `cat /proc/` + pid + `/environ; kill -0 ` + pid + ` && echo "signalled the other run"; true`})
	if strings.Contains(out, "canary-other-run-0452") || strings.Contains(out, "signalled the other run") {
		t.Errorf("a step reached another run's step:\n%s", out)
	}
	if !strings.Contains(out, "Permission denied") {
		t.Errorf("the read was not refused:\n%s", out)
	}
	if p, err := strconv.Atoi(pid); err == nil {
		_ = syscallKill(p)
	}
	<-done
}
