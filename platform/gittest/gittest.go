// Package gittest makes real git repositories for tests: initialise one on
// a branch, write and remove files, commit (merges too), tag, move refs.
// Commits are reproducible: every one is by the same author, at a time
// that starts at FirstCommitTime and moves on an hour per commit or tag,
// so a test that makes the same history gets the same shas.
//
// Any failure fails the test (t.Fatal), so these are for the test's own
// goroutine.
package gittest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// The author and committer of every commit and the tagger of every tag.
const (
	AuthorName  = "Ada Lovelace"
	AuthorEmail = "ada@sluice.invalid"
)

// FirstCommitTime is the time of a repository's first commit or tag.
func FirstCommitTime() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// Repo is a repository with a working copy.
type Repo struct {
	// Dir is the working copy; it is also the repository's URL (a local
	// path) for a clone or fetch.
	Dir string

	t   testing.TB
	git *git.Repository

	mu    sync.Mutex
	clock time.Time // the next signature's time
}

// New makes an empty repository in a new directory under t.TempDir() with
// branch main checked out.
func New(t testing.TB) *Repo {
	t.Helper()
	return Init(t, filepath.Join(t.TempDir(), "repo"), "main")
}

// Init makes an empty repository at dir (created when missing) with branch
// checked out; the branch is born with the first commit.
func Init(t testing.TB, dir, branch string) *Repo {
	t.Helper()
	g, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName(branch)},
	})
	if err != nil {
		t.Fatalf("gittest: init %s: %v", dir, err)
	}
	return &Repo{Dir: dir, t: t, git: g, clock: FirstCommitTime()}
}

// Git is the go-git repository, for what this package does not do.
func (r *Repo) Git() *git.Repository { return r.git }

// Write writes a file of the working copy (name is slash-separated),
// creating its directories. A shell script (a name ending in .sh, or
// content starting with "#!") is made executable.
func (r *Repo) Write(name, content string) {
	r.t.Helper()
	path := filepath.Join(r.Dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	mode := os.FileMode(0o644)
	if strings.HasSuffix(name, ".sh") || strings.HasPrefix(content, "#!") {
		mode = 0o755
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	if err := os.Chmod(path, mode); err != nil { // whatever the umask or an earlier mode did
		r.t.Fatalf("gittest: %v", err)
	}
}

// Remove removes a file of the working copy.
func (r *Repo) Remove(name string) {
	r.t.Helper()
	if err := os.Remove(filepath.Join(r.Dir, filepath.FromSlash(name))); err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
}

func (r *Repo) signature() *object.Signature {
	r.mu.Lock()
	defer r.mu.Unlock()
	sig := &object.Signature{Name: AuthorName, Email: AuthorEmail, When: r.clock}
	r.clock = r.clock.Add(time.Hour)
	return sig
}

// Commit commits the whole working copy (new, changed and removed files;
// nothing changed is fine) with message msg on the checked-out branch and
// returns its sha. Parents, when given, are the commit's parents instead
// of HEAD (two make a merge).
func (r *Repo) Commit(msg string, parents ...string) string {
	r.t.Helper()
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		r.t.Fatalf("gittest: stage %s: %v", r.Dir, err)
	}
	opts := &git.CommitOptions{AllowEmptyCommits: true}
	opts.Author = r.signature()
	opts.Committer = opts.Author
	for _, p := range parents {
		opts.Parents = append(opts.Parents, plumbing.NewHash(p))
	}
	h, err := wt.Commit(msg, opts)
	if err != nil {
		r.t.Fatalf("gittest: commit %q: %v", msg, err)
	}
	return h.String()
}

// CommitFile writes one file and commits it.
func (r *Repo) CommitFile(name, content, msg string) string {
	r.t.Helper()
	r.Write(name, content)
	return r.Commit(msg)
}

// CommitFiles writes files (by slash-separated name) and commits them.
func (r *Repo) CommitFiles(msg string, files map[string]string) string {
	r.t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		r.Write(name, files[name])
	}
	return r.Commit(msg)
}

// Tag makes the annotated tag name ("release <name>") of commit sha.
func (r *Repo) Tag(name, sha string) {
	r.t.Helper()
	if _, err := r.git.CreateTag(name, plumbing.NewHash(sha), &git.CreateTagOptions{Tagger: r.signature(), Message: "release " + name}); err != nil {
		r.t.Fatalf("gittest: tag %s: %v", name, err)
	}
}

// SetRef points the reference name (refs/heads/..., refs/pull/1/head) at
// sha, without touching the working copy.
func (r *Repo) SetRef(name, sha string) {
	r.t.Helper()
	ref := plumbing.NewHashReference(plumbing.ReferenceName(name), plumbing.NewHash(sha))
	if err := r.git.Storer.SetReference(ref); err != nil {
		r.t.Fatalf("gittest: set %s: %v", name, err)
	}
}

// RemoveRef deletes the reference name.
func (r *Repo) RemoveRef(name string) {
	r.t.Helper()
	if err := r.git.Storer.RemoveReference(plumbing.ReferenceName(name)); err != nil {
		r.t.Fatalf("gittest: remove %s: %v", name, err)
	}
}

// Checkout checks out the existing branch; later commits go on it.
func (r *Repo) Checkout(branch string) {
	r.t.Helper()
	wt, err := r.git.Worktree()
	if err != nil {
		r.t.Fatalf("gittest: %v", err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Branch: plumbing.NewBranchReferenceName(branch)}); err != nil {
		r.t.Fatalf("gittest: check out %s: %v", branch, err)
	}
}
