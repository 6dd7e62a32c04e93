package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/gittest"
)

// bins holds the binaries built once for the whole suite.
var bins struct {
	dir string
	err error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.err = buildBinaries(dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func buildBinaries(dir string) error {
	root := e2ekit.RepoRoot()
	targets := map[string]string{"sluice": "./cmd/sluice"}
	for _, s := range []string{"source", "build", "test", "release", "notify"} {
		targets["sluice-"+s] = e2ekit.ServiceCmd(s)
	}
	for name, pkg := range targets {
		cmd := exec.CommandContext(context.Background(), "go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
		}
	}
	// nats-server: the one `make` installs, for the five-process shape.
	for _, p := range []string{os.Getenv("SLUICE_NATS_SERVER"), filepath.Join(root, "bin", "nats-server")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return os.Symlink(p, filepath.Join(dir, "nats-server"))
		}
	}
	return nil
}

func bin(t *testing.T, name string) string {
	t.Helper()
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	p := filepath.Join(bins.dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built (%v); run `make bin/nats-server` for the NATS server", name, err)
	}
	return p
}

// proc is a started process whose output is kept for failure messages.
type proc struct {
	name string
	// env is the process's own variables, beside the test's environment.
	env  []string
	cmd  *exec.Cmd
	out  *e2ekit.Buffer
	done chan struct{}
}

func startProc(t *testing.T, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, env: env, out: &e2ekit.Buffer{}, done: make(chan struct{})}
	// Not CommandContext: the test stops it itself, with SIGTERM first.
	p.cmd = exec.Command(path, args...) //nolint:noctx // stopped by proc.stop, gracefully
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s ---\n%s", name, tail(p.out.String(), 60))
		}
	})
	return p
}

// stop sends SIGTERM and waits; SIGKILL after 20s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// kill sends SIGKILL to the process alone (its step children are in their
// own process groups, as after a real crash).
func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func tail(s string, n int) string { return e2ekit.Tail(s, n) }

// waitHTTP waits until url answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration, p *proc) {
	t.Helper()
	waitHTTPVia(t, http.DefaultClient, url, within, p)
}

// waitHTTPVia is waitHTTP through client (over https, one that trusts the
// platform's CA).
func waitHTTPVia(t *testing.T, client *http.Client, url string, within time.Duration, p *proc) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p != nil {
			select {
			case <-p.done:
				t.Fatalf("%s exited while waiting for %s:\n%s", p.name, url, tail(p.out.String(), 40))
			default:
			}
		}
		resp, err := client.Get(url) //nolint:noctx // a short poll in a test
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s", url, within)
}

// waitAuthenticated waits until the service svc at url accepts token.
func waitAuthenticated(t *testing.T, client *http.Client, url, svc, token string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := e2ekit.AcceptsTokenVia(client, url, svc, token)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not accept the admin token within 30s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cli runs the sluice CLI and returns its output and exit code.
func cli(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t, "sluice"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("sluice %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func mustCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, code := cli(t, env, args...)
	if code != 0 {
		t.Fatalf("sluice %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// newGitRepo makes a real git repository in the test's temp folder.
func newGitRepo(t *testing.T, files map[string]string) *gittest.Repo {
	t.Helper()
	return e2ekit.NewGitRepo(t, filepath.Join(t.TempDir(), "repo"), files)
}
