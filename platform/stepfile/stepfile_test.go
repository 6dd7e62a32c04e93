package stepfile_test

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/stepfile"
)

// workspace is a directory holding a regular file, a directory, a named
// pipe, a socket, a link to the file and a link out of it.
func workspace(t *testing.T) *os.Root {
	t.Helper()
	ws := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	for name, data := range map[string]string{"report.xml": "<testsuite/>", outside: "secret"} {
		if !filepath.IsAbs(name) {
			name = filepath.Join(ws, name)
		}
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(ws, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(ws, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("fifo", filepath.Join(ws, "link-to-fifo")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("report.xml", filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(ws, "escape")); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(ws, "socket"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	root, err := os.OpenRoot(ws)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Close() })
	return root
}

func TestOpen(t *testing.T) {
	t.Parallel()
	root := workspace(t)
	for _, name := range []string{"report.xml", "link"} {
		f, fi, err := stepfile.Open(root, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		data, err := io.ReadAll(f)
		_ = f.Close()
		if err != nil || string(data) != "<testsuite/>" || fi.Size() != int64(len(data)) {
			t.Errorf("%s: read %q (%v), size %d", name, data, err, fi.Size())
		}
	}
	_, _, err := stepfile.Open(root, "dir")
	var notRegular *stepfile.NotRegularError
	if want := "dir is a directory, not a regular file"; !errors.As(err, &notRegular) || err.Error() != want {
		t.Errorf("dir: %v; want a *NotRegularError %q", err, want)
	}
	// A socket cannot be opened at all; a link out of the workspace is
	// refused by os.Root.
	for _, name := range []string{"socket", "escape", "missing"} {
		if f, _, err := stepfile.Open(root, name); err == nil {
			_ = f.Close()
			t.Errorf("%s: opened", name)
		}
	}
	if _, _, err := stepfile.Open(root, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v; want fs.ErrNotExist", err)
	}
}

// TestOpenDoesNotWaitForAWriter: a named pipe that no process writes
// would block an open for reading until one does. Open returns at once;
// should it block, the test opens the pipe for writing itself after a
// while, which ends the wait, and fails.
func TestOpenDoesNotWaitForAWriter(t *testing.T) {
	t.Parallel()
	root := workspace(t)
	for _, name := range []string{"fifo", "link-to-fifo"} {
		done := make(chan error, 1)
		go func() {
			f, _, err := stepfile.Open(root, name)
			if err == nil {
				_ = f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			var notRegular *stepfile.NotRegularError
			if want := name + " is a named pipe (FIFO), not a regular file"; !errors.As(err, &notRegular) || err.Error() != want {
				t.Errorf("Open(%s): %v; want a *NotRegularError %q", name, err, want)
			}
		case <-time.After(20 * time.Second):
			w, err := root.OpenFile("fifo", os.O_WRONLY, 0)
			if err == nil {
				_ = w.Close()
			}
			t.Errorf("Open(%s) waited for a writer (then: %v)", name, <-done)
		}
	}
}

func TestKind(t *testing.T) {
	t.Parallel()
	for mode, want := range map[fs.FileMode]string{
		0o644:                             "a regular file",
		fs.ModeDir | 0o755:                "a directory",
		fs.ModeSymlink:                    "a symbolic link",
		fs.ModeNamedPipe:                  "a named pipe (FIFO)",
		fs.ModeSocket:                     "a socket",
		fs.ModeDevice | fs.ModeCharDevice: "a character device",
		fs.ModeDevice:                     "a device",
		fs.ModeIrregular:                  "an irregular file",
	} {
		if got := stepfile.Kind(mode); got != want {
			t.Errorf("Kind(%v) = %q, want %q", mode, got, want)
		}
	}
}
