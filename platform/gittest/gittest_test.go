package gittest_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/sluicehq/sluice/platform/gittest"
)

func commitOf(t *testing.T, r *gittest.Repo, sha string) *object.Commit {
	t.Helper()
	c, err := r.Git().CommitObject(plumbing.NewHash(sha))
	if err != nil {
		t.Fatalf("commit %s: %v", sha, err)
	}
	return c
}

func fileOf(t *testing.T, c *object.Commit, name string) (string, bool) {
	t.Helper()
	f, err := c.File(name)
	if errors.Is(err, object.ErrFileNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return s, true
}

func TestHistory(t *testing.T) {
	t.Parallel()
	r := gittest.Init(t, filepath.Join(t.TempDir(), "app"), "trunk")
	first := r.CommitFiles("first commit\n\nwith a body\n", map[string]string{
		"README":       "hello\n",
		"bin/build.sh": "go build ./...\n",
		"run":          "#!/bin/sh\necho hi\n",
	})
	c1 := commitOf(t, r, first)
	if c1.Message != "first commit\n\nwith a body\n" || c1.Author.Name != gittest.AuthorName ||
		c1.Author.Email != gittest.AuthorEmail || !c1.Author.When.Equal(gittest.FirstCommitTime()) {
		t.Errorf("first commit: %q by %s <%s> at %v", c1.Message, c1.Author.Name, c1.Author.Email, c1.Author.When)
	}
	for name, want := range map[string]os.FileMode{"README": 0o644, "bin/build.sh": 0o755, "run": 0o755} {
		fi, err := os.Stat(filepath.Join(r.Dir, filepath.FromSlash(name)))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", name, fi.Mode().Perm(), err, want)
		}
		f, err := c1.File(name)
		if err != nil {
			t.Fatal(err)
		}
		if exec := f.Mode == filemode.Executable; exec != (want == 0o755) {
			t.Errorf("%s is committed with mode %v", name, f.Mode)
		}
	}
	head, err := r.Git().Head()
	if err != nil || head.Name() != "refs/heads/trunk" || head.Hash().String() != first {
		t.Errorf("HEAD = %v, %v; want trunk at the first commit", head, err)
	}

	r.Remove("README")
	second := r.CommitFile("main.go", "package main\n", "second")
	c2 := commitOf(t, r, second)
	if _, ok := fileOf(t, c2, "README"); ok {
		t.Error("the removed README is in the second commit")
	}
	if got, _ := fileOf(t, c2, "main.go"); got != "package main\n" {
		t.Errorf("main.go = %q", got)
	}
	if !c2.Author.When.Equal(gittest.FirstCommitTime().Add(time.Hour)) || len(c2.ParentHashes) != 1 || c2.ParentHashes[0].String() != first {
		t.Errorf("second commit at %v with parents %v", c2.Author.When, c2.ParentHashes)
	}
	empty := r.Commit("nothing changed")
	if commitOf(t, r, empty).TreeHash != c2.TreeHash {
		t.Error("an empty commit changed the tree")
	}

	side := r.Commit("side work", first)
	merge := r.Commit("merge", empty, side)
	if ps := commitOf(t, r, merge).ParentHashes; len(ps) != 2 || ps[0].String() != empty || ps[1].String() != side {
		t.Errorf("merge parents %v; want %s and %s", ps, empty, side)
	}

	r.Tag("v1.0.0", first)
	tag, err := r.Git().Tag("v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	to, err := r.Git().TagObject(tag.Hash())
	if err != nil || to.Target.String() != first || to.Message != "release v1.0.0\n" {
		t.Errorf("tag v1.0.0 = %v, %v; want an annotated tag of %s", to, err, first)
	}
}

func TestRefsAndBranches(t *testing.T) {
	t.Parallel()
	r := gittest.New(t)
	c1 := r.CommitFile("a", "a\n", "first")
	r.SetRef("refs/heads/feature", c1)
	r.SetRef("refs/pull/1/head", c1)
	r.Checkout("feature")
	f1 := r.CommitFile("f", "f\n", "feature work")
	for ref, want := range map[string]string{"refs/heads/feature": f1, "refs/heads/main": c1, "refs/pull/1/head": c1} {
		got, err := r.Git().Reference(plumbing.ReferenceName(ref), true)
		if err != nil || got.Hash().String() != want {
			t.Errorf("%s = %v, %v; want %s", ref, got, err, want)
		}
	}
	r.RemoveRef("refs/pull/1/head")
	if _, err := r.Git().Reference("refs/pull/1/head", true); err == nil {
		t.Error("refs/pull/1/head is still there")
	}
	// A clone from Dir sees the branches.
	clone, err := git.PlainClone(filepath.Join(t.TempDir(), "clone"), false, &git.CloneOptions{URL: r.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clone.Reference("refs/remotes/origin/feature", true); err != nil {
		t.Errorf("the clone lacks feature: %v", err)
	}
}

// The same history gives the same shas: tests may compare them to
// constants and across repositories.
func TestHistoriesAreReproducible(t *testing.T) {
	t.Parallel()
	history := func() []string {
		r := gittest.New(t)
		return []string{r.CommitFile("a", "a\n", "one"), r.Commit("two")}
	}
	a, b := history(), history()
	if a[0] != b[0] || a[1] != b[1] {
		t.Errorf("two repositories with the same history: %v and %v", a, b)
	}
}
