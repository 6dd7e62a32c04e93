package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runAsHello makes this test binary the hello service when deploy.sh
// starts it (as the artifact it deploys), so that the tests of deploy.sh
// need no go build.
const runAsHello = "HELLO_TEST_RUN_AS_SERVICE"

func TestMain(m *testing.M) {
	if os.Getenv(runAsHello) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// deployer runs deploy.sh as Sluice's release service does, with this test
// binary as the release's hello and its own TMPDIR.
type deployer struct {
	t         *testing.T
	artifacts string
	tmp       string
}

func newDeployer(t *testing.T) *deployer {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("deploy.sh needs a POSIX shell")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	d := &deployer{t: t, artifacts: t.TempDir(), tmp: t.TempDir()}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.artifacts, "hello"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// deploy runs deploy.sh for version to addr with stateDir and returns its
// output. Whatever it started is stopped when the test ends.
func (d *deployer) deploy(stateDir, addr, version string) (string, error) {
	d.t.Helper()
	d.t.Cleanup(func() { stopPidFile(filepath.Join(stateDir, "hello.pid")) })
	cmd := exec.CommandContext(d.t.Context(), "sh", "deploy.sh")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"TMPDIR=" + d.tmp,
		"SLUICE_ARTIFACTS_DIR=" + d.artifacts,
		"SLUICE_RELEASE_VERSION=" + version,
		"SLUICE_ENVIRONMENT=staging",
		"SLUICE_STATE_DIR=" + stateDir,
		"HELLO_ADDR=" + addr,
		runAsHello + "=1",
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// stopPidFile kills the process a pid file names, if any.
func stopPidFile(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[0]))
	if err != nil || pid <= 1 {
		return
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// get returns the body of GET http://addr/.
func get(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET http://%s/: %v", addr, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// alive reports whether the process a pid file names still runs.
func alive(t *testing.T, pidFile string) bool {
	t.Helper()
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid := strings.TrimSpace(string(data))
	_, err = os.Stat("/proc/" + pid)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		t.Skip("needs /proc to tell whether a process runs")
	}
	// A zombie (state Z, after the command's closing parenthesis) is gone.
	_, after, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(after, "Z")
}

// A demo left running on the address by an earlier deploy from another
// state directory (another `make run` data directory) is replaced by the
// next deploy, not left to make it fail.
func TestDeployReplacesAHelloLeftOnItsAddress(t *testing.T) {
	t.Parallel()
	d := newDeployer(t)
	addr := freeAddr(t)
	first, second := t.TempDir(), t.TempDir()

	out, err := d.deploy(first, addr, "v0.1.0")
	if err != nil {
		t.Fatalf("first deploy: %v\n%s", err, out)
	}
	if got := get(t, addr); got != "hello from v0.1.0\n" {
		t.Fatalf("after the first deploy GET / = %q", got)
	}

	out, err = d.deploy(second, addr, "v0.2.0")
	if err != nil {
		t.Fatalf("second deploy, from another state directory, to the same address: %v\n%s", err, out)
	}
	firstDir, err := filepath.EvalSymlinks(first)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "stopping the hello deployed from "+firstDir+", still on "+addr) {
		t.Errorf("the second deploy does not say it stopped the first one's hello:\n%s", out)
	}
	if got := get(t, addr); got != "hello from v0.2.0\n" {
		t.Fatalf("after the second deploy GET / = %q", got)
	}
	if alive(t, filepath.Join(first, "hello.pid")) {
		t.Fatal("the first deploy's hello still runs")
	}
}

// Whatever else holds the address is left alone, and the deploy says so:
// here a listener of this test.
func TestDeployLeavesOtherProcessesAlone(t *testing.T) {
	t.Parallel()
	d := newDeployer(t)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	out, err := d.deploy(t.TempDir(), addr, "v0.1.0")
	if err == nil {
		t.Fatalf("the deploy succeeded on an address another process holds:\n%s", out)
	}
	if !strings.Contains(out, "deploy: "+addr+" is taken by a process that is not a hello this script deployed, so it was left alone") {
		t.Errorf("the deploy does not say why it failed:\n%s", out)
	}
	if strings.Contains(out, "stopping") {
		t.Errorf("the deploy tried to stop something:\n%s", out)
	}
	// This process and its listener are still here.
	conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("the test's listener is gone: %v", err)
	}
	_ = conn.Close()
}
