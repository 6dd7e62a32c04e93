package gitmirror_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/egress/egresstest"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newSource is an empty repository with main checked out, in a directory
// called src.
func newSource(t *testing.T) *gittest.Repo {
	t.Helper()
	return gittest.Init(t, filepath.Join(t.TempDir(), "src"), "main")
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
	t.Parallel()
	ctx := context.Background()
	src := newSource(t)
	c1 := src.CommitFile(".sluice.yaml", "version: 1\n", "first")
	src.SetRef("refs/heads/feature", c1)
	m := gitmirror.New(filepath.Join(t.TempDir(), "mirrors"), egresstest.Policy(t, egress.Local, egress.Loopback), nil)
	if err := m.Fetch(ctx, "r1", src.Dir, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	if got := head(t, m, "main"); got != c1 {
		t.Fatalf("main = %s, want %s", got, c1)
	}
	if b, err := m.DefaultBranch(ctx, src.Dir, gitauth.Credential{}); err != nil || b != "main" {
		t.Errorf("DefaultBranch = %q, %v; want main", b, err)
	}

	c2 := src.CommitFile("a.txt", "a\n", "second")
	// Rewrite feature to a commit of its own and tag it.
	src.Checkout("feature")
	f1 := src.CommitFile("f.txt", "f\n", "feature")
	src.Tag("v1", f1)
	src.SetRef("refs/heads/old", c1)
	if err := m.Fetch(ctx, "r1", "file://"+src.Dir, gitauth.Credential{}); err != nil {
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

	src.RemoveRef("refs/heads/old")
	if err := m.Fetch(ctx, "r1", src.Dir, gitauth.Credential{}); err != nil {
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
	t.Parallel()
	m := gitmirror.New(t.TempDir(), egresstest.Policy(t, egress.Local, egress.Loopback), nil)
	err := m.Fetch(context.Background(), "r1", filepath.Join(t.TempDir(), "missing"), gitauth.Credential{})
	if !errors.Is(err, gitmirror.ErrUnreadable) {
		t.Errorf("err = %v, want ErrUnreadable", err)
	}
}

// TestFetchOverHTTP mirrors a repository served by `git http-backend`
// (the git binary is needed only by this test server) that needs a token,
// and follows a deleted branch. Without the token, nothing is read; the
// token stays out of errors and of the mirror's config.
func TestFetchOverHTTP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t)
	c1 := src.CommitFile("a.txt", "a\n", "first")
	src.SetRef("refs/heads/gone", c1)
	const token = "tok-mirror-canary-0123"
	srv := gittest.ServeHTTP(t, filepath.Dir(src.Dir), "oauth2", token)
	url := srv.URL + "/src"
	cred := gitauth.Credential{Username: "oauth2", Token: token}

	m := gitmirror.New(t.TempDir(), egresstest.Policy(t, egress.Local, egress.Loopback), nil)
	for _, wrong := range []gitauth.Credential{{}, {Username: "oauth2", Token: "tok-wrong"}} {
		err := m.Fetch(ctx, "r1", url, wrong)
		if !errors.Is(err, gitmirror.ErrUnreadable) || !strings.Contains(err.Error(), "authentication required") {
			t.Errorf("fetch with %q: %v, want unreadable: authentication required", wrong.Token, err)
		}
		if _, err := m.DefaultBranch(ctx, url, wrong); err == nil || !strings.Contains(err.Error(), "authentication required") {
			t.Errorf("default branch with %q: %v, want authentication required", wrong.Token, err)
		}
	}
	if err := m.Fetch(ctx, "r1", url, cred); err != nil {
		t.Fatal(err)
	}
	if got := head(t, m, "main"); got != c1 {
		t.Errorf("main = %s, want %s", got, c1)
	}
	if b, err := m.DefaultBranch(ctx, url, cred); err != nil || b != "main" {
		t.Errorf("DefaultBranch = %q, %v; want main", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(m.Dir("r1"), "config")); err != nil || strings.Contains(string(b), token) {
		t.Errorf("the mirror's config: %v, or it holds the token:\n%s", err, b)
	}
	c2 := src.CommitFile("b.txt", "b\n", "second")
	src.RemoveRef("refs/heads/gone")
	if err := m.Fetch(ctx, "r1", url, cred); err != nil {
		t.Fatal(err)
	}
	if got := head(t, m, "main"); got != c2 {
		t.Errorf("main = %s, want %s", got, c2)
	}
	if _, err := m.BranchHead("r1", "gone"); !errors.Is(err, gitmirror.ErrNotFound) {
		t.Errorf("deleted branch: %v, want ErrNotFound", err)
	}
}

// A mirror fetched many times is repacked, so reading it does not get
// slower with every fetch; every commit stays readable.
func TestManyFetchesKeepFewPacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t)
	m := gitmirror.New(filepath.Join(t.TempDir(), "mirrors"), egresstest.Policy(t, egress.Local, egress.Loopback), nil)
	var shas []string
	for i := range 2*gitmirror.MaxPacks + 3 {
		shas = append(shas, src.CommitFile("n.txt", strings.Repeat("x", i+1)+"\n", "commit"))
		if err := m.Fetch(ctx, "r1", src.Dir, gitauth.Credential{}); err != nil {
			t.Fatal(err)
		}
	}
	packs, err := filepath.Glob(filepath.Join(m.Dir("r1"), "objects", "pack", "*.pack"))
	if err != nil || len(packs) == 0 || len(packs) > gitmirror.MaxPacks {
		t.Fatalf("%d packs after %d fetches (%v); want at most %d", len(packs), len(shas), err, gitmirror.MaxPacks)
	}
	if got := head(t, m, "main"); got != shas[len(shas)-1] {
		t.Fatalf("main = %s, want %s", got, shas[len(shas)-1])
	}
	for i, sha := range shas {
		data, err := m.ReadFile("r1", sha, "n.txt", 1000)
		if err != nil || len(data) != i+2 {
			t.Fatalf("ReadFile at commit %d: %q, %v", i, data, err)
		}
	}
	log, err := m.Log(ctx, "r1", "", shas[len(shas)-1], 0)
	if err != nil || len(log) != len(shas) {
		t.Fatalf("Log = %d commits, %v; want %d", len(log), err, len(shas))
	}
}

// Without the allowance, neither a local repository (no mirror is made)
// nor one served on loopback (the server sees no request) is read.
func TestFetchRefusedByPolicy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t)
	src.CommitFile("a.txt", "a\n", "first")
	hits := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits <- struct{}{}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	for _, tc := range []struct {
		url   string
		allow string
	}{
		{src.Dir, egress.Loopback},
		{"file://" + src.Dir, egress.Loopback},
		{srv.URL + "/src", egress.Local},
	} {
		m := gitmirror.New(filepath.Join(t.TempDir(), "mirrors"), egresstest.Policy(t, tc.allow), nil)
		err := m.Fetch(ctx, "r1", tc.url, gitauth.Credential{})
		var refused *egress.RefusedError
		if !errors.As(err, &refused) {
			t.Errorf("Fetch(%s) with only %s allowed: %v, want refused", tc.url, tc.allow, err)
		}
		if _, err := os.Stat(m.Dir("r1")); tc.allow != egress.Local && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused fetch of %s made a mirror: %v", tc.url, err)
		}
		if _, err := m.DefaultBranch(ctx, tc.url, gitauth.Credential{}); !errors.As(err, &refused) {
			t.Errorf("DefaultBranch(%s) with only %s allowed: %v, want refused", tc.url, tc.allow, err)
		}
	}
	if len(hits) != 0 {
		t.Errorf("the loopback server got %d requests", len(hits))
	}
}

func TestChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := newSource(t)
	c1 := src.CommitFiles("first", map[string]string{".sluice.yaml": "version: 1\n", "docs/a.md": "a\n"})
	c2 := src.CommitFiles("second", map[string]string{"main.go": "package main\n", "docs/a.md": "b\n"})
	src.Remove("docs/a.md")
	c3 := src.Commit("third")
	c4 := src.CommitFiles("fourth", map[string]string{"x/1": "1", "x/2": "2", "x/3": "3"})
	m := gitmirror.New(filepath.Join(t.TempDir(), "mirrors"), egresstest.Policy(t, egress.Local, egress.Loopback), nil)
	if err := m.Fetch(ctx, "r1", src.Dir, gitauth.Credential{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		base, sha string
		limit     int
		want      string
		complete  bool
	}{
		{"", c1, 10, ".sluice.yaml docs/a.md", true},                                    // a root commit: every path
		{"", c2, 10, "docs/a.md main.go", true},                                         // against its parent
		{c1, c3, 10, "docs/a.md main.go", true},                                         // against the branch's last run: removed too
		{c3, c1, 10, ".sluice.yaml docs/a.md", true},                                    // a base that is no ancestor: the parent
		{"0123456789012345678901234567890123456789", c2, 10, "docs/a.md main.go", true}, // an unknown base
		{c3, c4, 2, "x/1 x/2", false},                                                   // more than the limit
	} {
		paths, complete, err := m.Changes(ctx, "r1", tc.base, tc.sha, tc.limit)
		if err != nil || strings.Join(paths, " ") != tc.want || complete != tc.complete {
			t.Errorf("Changes(%.7s, %.7s) = %v, %v, %v; want %s, %v", tc.base, tc.sha, paths, complete, err, tc.want, tc.complete)
		}
	}
}
