package natstest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func writeExecutable(t *testing.T, path, script string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(script), mode); err != nil {
		t.Fatal(err)
	}
}

func TestFindUp(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join("bin", "nats-server")
	if _, ok := findUp(deep, rel); ok {
		t.Fatal("found a binary that does not exist")
	}
	// Not executable: skipped.
	writeExecutable(t, filepath.Join(root, "a", "b", rel), "", 0o644)
	writeExecutable(t, filepath.Join(root, "a", rel), "", 0o755)
	got, ok := findUp(deep, rel)
	if want := filepath.Join(root, "a", rel); !ok || got != want {
		t.Errorf("findUp = %q, %v; want %q", got, ok, want)
	}
}

func TestFindBinary(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "my-nats-server")
	writeExecutable(t, fake, "#!/bin/sh\n", 0o755)

	t.Setenv(EnvBinary, fake)
	if got, err := Binary(); err != nil || got != fake {
		t.Errorf("with $%s: Binary = %q, %v; want %q", EnvBinary, got, err, fake)
	}

	t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "missing"))
	if _, err := Binary(); err == nil || !strings.Contains(err.Error(), EnvBinary) {
		t.Errorf("with a missing $%s: err = %v", EnvBinary, err)
	}

	t.Setenv(EnvBinary, "")
	onPath := t.TempDir()
	writeExecutable(t, filepath.Join(onPath, "nats-server"), "#!/bin/sh\n", 0o755)
	t.Setenv("PATH", onPath)
	if got, err := Binary(); err != nil || got != filepath.Join(onPath, "nats-server") {
		t.Errorf("on PATH: Binary = %q, %v", got, err)
	}

	t.Setenv("PATH", t.TempDir())
	t.Chdir(t.TempDir())
	_, err := Binary()
	if err == nil || !strings.Contains(err.Error(), "make bin/nats-server") {
		t.Errorf("nothing found: err = %v, want a hint to run make bin/nats-server", err)
	}
}

// fatalTB records the first Fatal call and stops the calling goroutine, like
// testing.T does.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Fatal(args ...any) { f.record(strings.TrimSuffix(fmt.Sprintln(args...), "\n")) }
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.record(fmt.Sprintf(format, args...))
}

func (f *fatalTB) record(msg string) {
	f.mu.Lock()
	f.msg = msg
	f.mu.Unlock()
	runtime.Goexit()
}

func TestStartFailureIncludesServerOutput(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "nats-server")
	writeExecutable(t, fake, "#!/bin/sh\necho \"boom: bad flags $*\" >&2\nexit 1\n", 0o755)
	t.Setenv(EnvBinary, fake)

	tb := &fatalTB{TB: t}
	done := make(chan *Server)
	go func() {
		defer close(done)
		done <- Start(tb)
	}()
	if s := <-done; s != nil {
		t.Fatal("Start returned a server for a binary that exits at once")
	}
	if !strings.Contains(tb.msg, "exited during startup") || !strings.Contains(tb.msg, "boom: bad flags") || !strings.Contains(tb.msg, "-js") {
		t.Errorf("Fatal message lacks the server's output:\n%s", tb.msg)
	}
}
