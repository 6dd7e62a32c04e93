package gitmirror_test

import (
	"context"
	"errors"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/services/source/gitmirror"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

type source struct {
	dir   string
	repo  *git.Repository
	clock time.Time
}

func newSource(t *testing.T) *source {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	repo, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &source{dir: dir, repo: repo, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (s *source) commit(t *testing.T, file, content, msg string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, err := s.repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "T", Email: "t@sluice.invalid", When: s.clock}
	s.clock = s.clock.Add(time.Minute)
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func (s *source) setRef(t *testing.T, name, sha string) {
	t.Helper()
	if err := s.repo.Storer.SetReference(plumbing.NewHashReference(plumbing.ReferenceName(name), plumbing.NewHash(sha))); err != nil {
		t.Fatal(err)
	}
}

func head(t *testing.T, m *gitmirror.Mirrors, branch string) string {
	t.Helper()
	sha, err := m.BranchHead("r1", branch)
	if err != nil {
		t.Fatalf("BranchHead(%s): %v", branch, err)
	}
	return sha
}

// TestFetchLocal mirrors a local repository, then follows it through new
// commits, a rewritten branch, a deleted branch and new tags.
func TestFetchLocal(t *testing.T) {
	ctx := context.Background()
	src := newSource(t)
	c1 := src.commit(t, ".sluice.yaml", "version: 1\n", "first")
	src.setRef(t, "refs/heads/feature", c1)
	m := gitmirror.New(filepath.Join(t.TempDir(), "mirrors"))
	if err := m.Fetch(ctx, "r1", src.dir); err != nil {
		t.Fatal(err)
	}
	if got := head(t, m, "main"); got != c1 {
		t.Fatalf("main = %s, want %s", got, c1)
	}
	if b, err := gitmirror.DefaultBranch(ctx, src.dir); err != nil || b != "main" {
		t.Errorf("DefaultBranch = %q, %v; want main", b, err)
	}

	c2 := src.commit(t, "a.txt", "a\n", "second")
	// Rewrite feature to a commit of its own and tag it.
	wt, _ := src.repo.Worktree()
	if err := wt.Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName("feature")}); err != nil {
		t.Fatal(err)
	}
	f1 := src.commit(t, "f.txt", "f\n", "feature")
	if _, err := src.repo.CreateTag("v1", plumbing.NewHash(f1), &git.CreateTagOptions{
		Tagger: &object.Signature{Name: "T", Email: "t@sluice.invalid", When: src.clock}, Message: "v1",
	}); err != nil {
		t.Fatal(err)
	}
	src.setRef(t, "refs/heads/old", c1)
	if err := m.Fetch(ctx, "r1", "file://"+src.dir); err != nil {
		t.Fatal(err)
	}
	if got := head(t, m, "main"); got != c2 {
		t.Errorf("main = %s, want %s", got, c2)
	}
	if got := head(t, m, "feature"); got != f1 {
		t.Errorf("feature = %s, want %s", got, f1)
	}
	res, err := m.Resolve("r1", "v1")
	if err != nil || res.Commit != f1 || res.Ref != "refs/tags/v1" || res.Branch != "" {
		t.Errorf("Resolve(v1) = %+v, %v; want the annotated tag's commit %s", res, err, f1)
	}

	if err := src.repo.Storer.RemoveReference("refs/heads/old"); err != nil {
		t.Fatal(err)
	}
	if err := m.Fetch(ctx, "r1", src.dir); err != nil {
		t.Fatal(err)
	}
	if _, err := m.BranchHead("r1", "old"); !errors.Is(err, gitmirror.ErrNotFound) {
		t.Errorf("deleted branch: %v, want ErrNotFound", err)
	}
	branches, err := m.Branches("r1")
	if err != nil || strings.Join(branches, ",") != "feature,main" {
		t.Errorf("Branches = %v, %v", branches, err)
	}

	data, err := m.ReadFile("r1", c1, ".sluice.yaml", 100)
	if err != nil || string(data) != "version: 1\n" {
		t.Errorf("ReadFile = %q, %v", data, err)
	}
	if _, err := m.ReadFile("r1", c1, ".sluice.yaml", 5); !errors.Is(err, gitmirror.ErrTooLarge) {
		t.Errorf("ReadFile over the limit: %v, want ErrTooLarge", err)
	}
	if _, err := m.ReadFile("r1", c1, "missing.yaml", 100); !errors.Is(err, gitmirror.ErrNotFound) {
		t.Errorf("ReadFile of a missing file: %v, want ErrNotFound", err)
	}
	if _, err := m.Resolve("r1", "nope"); !errors.Is(err, gitmirror.ErrNotFound) {
		t.Errorf("Resolve(nope): %v, want ErrNotFound", err)
	}
	log, err := m.Log(ctx, "r1", c1, f1, 0)
	if err != nil || len(log) != 1 || log[0].SHA != f1 {
		t.Errorf("Log(c1..f1) = %v, %v; want only %s", log, err, f1)
	}
}

func TestFetchUnreadable(t *testing.T) {
	m := gitmirror.New(t.TempDir())
	err := m.Fetch(context.Background(), "r1", filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, gitmirror.ErrUnreadable) {
		t.Errorf("err = %v, want ErrUnreadable", err)
	}
}

// TestFetchOverHTTP mirrors a repository served by `git http-backend`
// (the git binary is needed only by this test server) and follows a
// deleted branch.
func TestFetchOverHTTP(t *testing.T) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git binary not found; needed to serve a repository over HTTP")
	}
	ctx := context.Background()
	src := newSource(t)
	c1 := src.commit(t, "a.txt", "a\n", "first")
	src.setRef(t, "refs/heads/gone", c1)
	srv := httptest.NewServer(&cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(src.dir), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + t.TempDir()},
	})
	defer srv.Close()
	url := srv.URL + "/src"

	m := gitmirror.New(t.TempDir())
	if err := m.Fetch(ctx, "r1", url); err != nil {
		t.Fatal(err)
	}
	if got := head(t, m, "main"); got != c1 {
		t.Errorf("main = %s, want %s", got, c1)
	}
	if b, err := gitmirror.DefaultBranch(ctx, url); err != nil || b != "main" {
		t.Errorf("DefaultBranch = %q, %v; want main", b, err)
	}
	c2 := src.commit(t, "b.txt", "b\n", "second")
	if err := src.repo.Storer.RemoveReference("refs/heads/gone"); err != nil {
		t.Fatal(err)
	}
	if err := m.Fetch(ctx, "r1", url); err != nil {
		t.Fatal(err)
	}
	if got := head(t, m, "main"); got != c2 {
		t.Errorf("main = %s, want %s", got, c2)
	}
	if _, err := m.BranchHead("r1", "gone"); !errors.Is(err, gitmirror.ErrNotFound) {
		t.Errorf("deleted branch: %v, want ErrNotFound", err)
	}
}
