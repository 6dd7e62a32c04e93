// Package gitcheckout checks out one commit of a git repository into a
// directory, in pure Go (go-git): no git binary is needed, neither for remote
// URLs nor for local repositories.
package gitcheckout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/revlist"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gitremote"
	"github.com/sluicehq/sluice/platform/runner"
)

// ErrCommitNotFound is returned (wrapped) by Checkout when the repository
// does not contain the requested commit.
var ErrCommitNotFound = errors.New("commit not found in repository")

// Checkout clones url into dir and checks out commit with a detached HEAD.
//
// url is a local path (a working copy or a bare repository), a file:// URL,
// or any URL go-git can fetch (https://, ssh://, git://), as far as policy
// allows (gitremote.Guard): every connection to an http(s) URL is checked
// against it, and a refusal is an *egress.RefusedError. commit must be a
// full 40-hex SHA-1. dir must not exist or be an empty directory; it is
// created if needed, and on failure Checkout removes what it put there.
//
// The clone holds the full history of commit and a remote "origin" pointing
// at url. For remote URLs, commits that are not reachable from a branch or a
// tag are fetched by hash, which the server must allow. Submodules are not
// checked out.
//
// cred is the repository's credential (gitauth: a token for an https URL,
// an SSH key and known_hosts for an ssh one), the zero Credential for
// none; a local repository needs none. No error quotes it.
func Checkout(ctx context.Context, policy *egress.Policy, url, commit, dir string, cred gitauth.Credential) (err error) {
	hash, err := parseCommit(commit)
	if err != nil {
		return err
	}
	gctx, err := gitremote.Guard(ctx, policy, url)
	if err != nil {
		return fmt.Errorf("gitcheckout: %w", err)
	}
	created, err := prepareDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			cleanDir(dir, created)
			// A bound the caller set (Limits.Checkout) says why it ended.
			if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("gitcheckout: %w", cause)
			}
		}
	}()

	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return fmt.Errorf("gitcheckout: repository url %q: %w", url, err)
	}
	var repo *git.Repository
	if ep.Protocol == "file" {
		repo, err = cloneLocal(ctx, ep.Path, url, hash, dir)
	} else {
		auth, aerr := cred.Auth(url)
		if aerr != nil {
			return fmt.Errorf("gitcheckout: %w", aerr)
		}
		repo, err = cloneRemote(gctx, url, hash, dir, auth)
		err = cred.Explain(err)
	}
	if err != nil {
		return err
	}

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gitcheckout: %w", err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return fmt.Errorf("gitcheckout: worktree of %s: %w", dir, err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: hash, Force: true}); err != nil {
		return fmt.Errorf("gitcheckout: check out %s into %s: %w", hash, dir, err)
	}
	return nil
}

func parseCommit(commit string) (plumbing.Hash, error) {
	c := strings.ToLower(commit)
	if !plumbing.IsHash(c) {
		return plumbing.ZeroHash, fmt.Errorf("gitcheckout: commit %q is not a full 40-hex SHA-1", commit)
	}
	return plumbing.NewHash(c), nil
}

// prepareDir makes sure dir is an empty directory and reports whether it
// had to create it.
func prepareDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("gitcheckout: create %s: %w", dir, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("gitcheckout: destination: %w", err)
	case len(entries) > 0:
		return false, fmt.Errorf("gitcheckout: destination %s is not empty", dir)
	}
	return false, nil
}

// cleanDir undoes a failed checkout: it removes dir if Checkout created it,
// else empties it.
func cleanDir(dir string, created bool) {
	if created {
		_ = os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// cloneRemote clones url and makes sure hash is present, fetching it by
// hash if no branch or tag leads to it (a pull request head, for example).
func cloneRemote(ctx context.Context, url string, hash plumbing.Hash, dir string, auth transport.AuthMethod) (*git.Repository, error) {
	repo, err := git.PlainCloneContext(ctx, dir, false, &git.CloneOptions{
		URL:        url,
		Auth:       auth,
		NoCheckout: true,
		Tags:       git.AllTags,
	})
	if err != nil {
		return nil, fmt.Errorf("gitcheckout: clone %s: %w", url, err)
	}
	if _, err := repo.CommitObject(hash); err == nil {
		return repo, nil
	} else if !errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("gitcheckout: read commit %s: %w", hash, err)
	}

	spec := config.RefSpec(hash.String() + ":refs/sluice/checkout")
	err = repo.FetchContext(ctx, &git.FetchOptions{RefSpecs: []config.RefSpec{spec}, Tags: git.NoTags, Auth: auth})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("gitcheckout: fetch %s from %s: %w", hash, url, err)
		}
		return nil, fmt.Errorf("gitcheckout: %s: %w (not on any branch or tag, and fetching it by hash failed: %w)",
			hash, ErrCommitNotFound, err)
	}
	if _, err := repo.CommitObject(hash); err != nil {
		return nil, fmt.Errorf("gitcheckout: %s: %w: %w", hash, ErrCommitNotFound, err)
	}
	return repo, nil
}

// cloneLocal clones the repository at path by copying the objects reachable
// from hash into a new repository in dir. (go-git's file transport would
// run the git-upload-pack binary.)
func cloneLocal(ctx context.Context, path, url string, hash plumbing.Hash, dir string) (*git.Repository, error) {
	src, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("gitcheckout: open %s: %w", url, err)
	}
	if _, err := src.CommitObject(hash); err != nil {
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return nil, fmt.Errorf("gitcheckout: %s in %s: %w", hash, url, ErrCommitNotFound)
		}
		return nil, fmt.Errorf("gitcheckout: read commit %s in %s: %w", hash, url, err)
	}
	objects, err := revlist.Objects(src.Storer, []plumbing.Hash{hash}, nil)
	if err != nil {
		return nil, fmt.Errorf("gitcheckout: list objects of %s in %s: %w", hash, url, err)
	}

	dst, err := git.PlainInit(dir, false)
	if err != nil {
		return nil, fmt.Errorf("gitcheckout: init %s: %w", dir, err)
	}
	if _, err := dst.CreateRemote(&config.RemoteConfig{Name: git.DefaultRemoteName, URLs: []string{url}}); err != nil {
		return nil, fmt.Errorf("gitcheckout: add remote to %s: %w", dir, err)
	}

	if err := CopyObjects(ctx, runner.FromContext(ctx), src.Storer, dst.Storer, objects); err != nil {
		return nil, fmt.Errorf("gitcheckout: copy objects from %s: %w", url, err)
	}
	return dst, nil
}

// CopyObjects streams a pack of objects from src into dst, the pack
// encoded in a goroutine of its own under sup: a panic there (a bad object
// in src) fails the copy with a *runner.PanicError, counted in
// sluice_goroutine_panics_total{task="git pack encoder"}, instead of
// crashing the process.
func CopyObjects(ctx context.Context, sup *runner.Supervisor, src storer.EncodedObjectStorer, dst storer.Storer, objects []plumbing.Hash) error {
	pr, pw := io.Pipe()
	encoded := make(chan error, 1)
	go func() {
		err := sup.Try("git pack encoder", func() error {
			_, err := packfile.NewEncoder(pw, src, false).Encode(objects, 0)
			return err
		})
		pw.CloseWithError(err)
		encoded <- err
	}()
	err := packfile.UpdateObjectStorage(dst, ctxReader{ctx, pr})
	pr.CloseWithError(io.ErrClosedPipe) // stops the encoder if the copy failed
	if encErr := <-encoded; encErr != nil {
		if _, panicked := runner.Panicked(encErr); panicked || err == nil {
			err = encErr
		}
	}
	return err
}

// ctxReader fails reads once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
