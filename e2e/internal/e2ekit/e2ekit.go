// Package e2ekit holds what the end-to-end test packages share: finding the
// repository, the bundled example's files, real git repositories made by a
// test, and waiting until a service accepts a token.
package e2ekit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor/container/containertest"
	"github.com/sluicehq/sluice/platform/gittest"
)

// RepoRoot is the repository's top folder (where go.work is), or "".
func RepoRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// ExampleFiles are the files of examples/hello (without build output).
func ExampleFiles(t testing.TB) map[string]string {
	t.Helper()
	root := filepath.Join(RepoRoot(), "examples", "hello")
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "bin" || d.Name() == "reports" {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		files[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// NewGitRepo makes a repository in dir whose default branch is main and
// commits files as its first commit ("feat: first version"). Scripts
// (names ending in .sh) are executable.
func NewGitRepo(t testing.TB, dir string, files map[string]string) *gittest.Repo {
	t.Helper()
	r := gittest.Init(t, dir, "main")
	r.CommitFiles("feat: first version", files)
	return r
}

// FreePort is a TCP port on 127.0.0.1 that nothing listens on just now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("listener address %v", ln.Addr())
	}
	return addr.Port
}

// ServiceCmd is the package of a service's binary, relative to the
// repository root: ./services/<dir>/cmd/sluice-<service>. The test
// service's module is services/tests (its Go package is tests).
func ServiceCmd(service string) string {
	dir := service
	if service == "test" {
		dir = "tests"
	}
	return "./services/" + dir + "/cmd/sluice-" + service
}

// probes are a procedure of each service that any role may call.
var probes = map[string]string{
	"source":  "/sluice.source.v1.AccessService/WhoAmI",
	"build":   "/sluice.build.v1.BuildService/ListBuilds",
	"test":    "/sluice.test.v1.TestService/GetTestRun",
	"release": "/sluice.release.v1.ReleaseService/ListReleases",
	"notify":  "/sluice.notify.v1.NotifyService/ListSubscriptions",
}

// ErrTokenNotAccepted is AcceptsToken's error while the service does not
// accept the token (yet).
var ErrTokenNotAccepted = errors.New("token not accepted")

// AcceptsToken is nil once the service svc at baseURL accepts token: it
// answers a call with anything but unauthenticated (401) or unavailable
// (503: it has not loaded the credentials yet). Services learn a token
// from NATS a moment after source registers it.
func AcceptsToken(baseURL, svc, token string) error {
	return AcceptsTokenVia(http.DefaultClient, baseURL, svc, token)
}

// AcceptsTokenVia is AcceptsToken through client (over https, one that
// trusts the platform's CA).
func AcceptsTokenVia(client *http.Client, baseURL, svc, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+probes[svc], strings.NewReader("{}"))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusServiceUnavailable {
		return fmt.Errorf("%w: %s answered %s", ErrTokenNotAccepted, svc, resp.Status)
	}
	return nil
}

// The labels every container, network and volume a test makes carries, so
// that `make test-clean` (scripts/test-clean, which `make test` runs first)
// finds what a killed run left: TestLabel marks it as the tests', and
// TestOwnerLabel names the test process that made it, which must be gone
// before its leftovers are removed (two suites may run at once). They are
// containertest's, which the platform's own container tests use.
const (
	TestLabel      = containertest.TestLabel
	TestOwnerLabel = containertest.TestOwnerLabel
)

// TestLabels are the labels of what this test process makes
// (containertest.TestLabels).
func TestLabels() map[string]string { return containertest.TestLabels() }

// testOwner is this process as "<PID namespace inode>-<pid>".
func testOwner() string { return TestLabels()[TestOwnerLabel] }

// TestLabelArgs are TestLabels as `docker run`/`docker network create`
// arguments.
func TestLabelArgs() []string {
	var args []string
	for k, v := range TestLabels() {
		args = append(args, "--label", k+"="+v)
	}
	return args
}

// ComposeProject is a fresh Compose project name that says which test
// process made it (docker-compose labels its containers, networks and
// volumes with the project, and the committed file cannot carry a test's
// labels): sluicee2e-<namespace inode>-<pid>-<random>.
func ComposeProject() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "sluicee2e-" + testOwner() + "-" + hex.EncodeToString(b[:])
}

// Buffer is a bytes.Buffer that a process's output and a test's reads
// may use at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
