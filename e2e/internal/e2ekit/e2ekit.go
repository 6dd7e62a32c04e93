// Package e2ekit holds what the end-to-end test packages share: finding the
// repository, the bundled example's files, and real git repositories made
// by a test.
package e2ekit

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

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
