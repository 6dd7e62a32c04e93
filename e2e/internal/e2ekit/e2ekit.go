// Package e2ekit holds what the end-to-end test packages share: finding the
// repository, the bundled example's files, and real git repositories made
// by a test.
package e2ekit

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
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

// GitRepo is a git repository on disk whose default branch is main.
type GitRepo struct {
	t   testing.TB
	Dir string
	git *git.Repository
}

// NewGitRepo makes a repository in dir and commits files as its first
// commit ("feat: first version").
func NewGitRepo(t testing.TB, dir string, files map[string]string) *GitRepo {
	t.Helper()
	g, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{InitOptions: git.InitOptions{DefaultBranch: "refs/heads/main"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &GitRepo{t: t, Dir: dir, git: g}
	r.Commit("feat: first version", files)
	return r
}

// Commit writes files (scripts ending in .sh are executable), commits every
// change with message msg and returns the commit's sha.
func (r *GitRepo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			r.t.Fatal(err)
		}
	}
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatal(err)
	}
	sig := &object.Signature{Name: "e2e", Email: "e2e@localhost", When: time.Now()}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		r.t.Fatal(err)
	}
	return h.String()
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
