// Package gitmirror keeps a bare mirror of each registered repository under
// one directory and answers every read from it: refs, commits, files at a
// commit, commit ranges. It is pure Go (go-git): a local repository is
// mirrored by copying objects in-process, so no git binary is needed;
// remote URLs are fetched with go-git's transports. What it may read is the
// egress policy's to say (gitremote.Guard): a refusal is an
// *egress.RefusedError.
package gitmirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gitcheckout"
	"github.com/sluicehq/sluice/platform/gitremote"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/services/source/domain"
)

// Errors, wrapped with what was looked for.
var (
	// ErrNotFound: no such ref, commit or file.
	ErrNotFound = errors.New("not found")
	// ErrTooLarge: a file is bigger than the caller allows.
	ErrTooLarge = errors.New("file too large")
	// ErrTooMany: a folder holds more files than the caller allows.
	ErrTooMany = errors.New("too many files")
	// ErrUnreadable: the URL does not lead to a git repository we can read.
	ErrUnreadable = errors.New("cannot read repository")
)

// remoteName is the mirror's only remote.
const remoteName = "origin"

// Mirrors manages the mirrors under one directory, one per repository id.
// It serialises fetches of one mirror against each other and against its
// readers; different mirrors do not wait for each other.
type Mirrors struct {
	root   string
	policy *egress.Policy
	sup    *runner.Supervisor
	mu     sync.Mutex
	locks  map[string]*sync.RWMutex
}

// New manages mirrors under root (created on the first fetch) of the
// repositories policy lets it read. sup guards the goroutines of a fetch
// (nil: runner's default, which counts nowhere).
func New(root string, policy *egress.Policy, sup *runner.Supervisor) *Mirrors {
	return &Mirrors{root: root, policy: policy, sup: sup, locks: map[string]*sync.RWMutex{}}
}

func (m *Mirrors) lock(id string) *sync.RWMutex {
	m.mu.Lock()
	defer m.mu.Unlock()
	l, ok := m.locks[id]
	if !ok {
		l = &sync.RWMutex{}
		m.locks[id] = l
	}
	return l
}

// Dir is where the mirror of repository id lives.
func (m *Mirrors) Dir(id string) string { return filepath.Join(m.root, id) }

// IsLocal reports whether url names a repository on this machine (a path or
// a file:// URL) and returns its path.
func IsLocal(url string) (string, bool, error) {
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return "", false, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	if ep.Protocol == "file" {
		return ep.Path, true, nil
	}
	return "", false, nil
}

// Remove deletes the mirror of repository id.
func (m *Mirrors) Remove(id string) error {
	l := m.lock(id)
	l.Lock()
	defer l.Unlock()
	return os.RemoveAll(m.Dir(id))
}

// DefaultBranch returns the branch that url's HEAD names (it may have no
// commits yet). When HEAD is detached it falls back to main, then master,
// then the only branch. cred is the repository's credential (none: the
// zero Credential), used for a remote URL.
func (m *Mirrors) DefaultBranch(ctx context.Context, url string, cred gitauth.Credential) (string, error) {
	path, local, err := IsLocal(url)
	if err != nil {
		return "", err
	}
	ctx, err = gitremote.Guard(ctx, m.policy, url)
	if err != nil {
		return "", err
	}
	var head *plumbing.Reference
	var refs []*plumbing.Reference
	if local {
		src, err := openSource(path, url)
		if err != nil {
			return "", err
		}
		head, _ = src.Storer.Reference(plumbing.HEAD)
		iter, err := src.References()
		if err != nil {
			return "", fmt.Errorf("list refs of %s: %w", url, err)
		}
		_ = iter.ForEach(func(r *plumbing.Reference) error { refs = append(refs, r); return nil })
	} else {
		auth, err := cred.Auth(url)
		if err != nil {
			return "", err
		}
		remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: remoteName, URLs: []string{url}})
		refs, err = remote.ListContext(ctx, &git.ListOptions{Auth: auth})
		if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
			return "", cred.Explain(fmt.Errorf("%w %s: %w", ErrUnreadable, url, err))
		}
		for _, r := range refs {
			if r.Name() == plumbing.HEAD {
				head = r
			}
		}
	}
	if head != nil && head.Type() == plumbing.SymbolicReference && head.Target().IsBranch() {
		return head.Target().Short(), nil
	}
	var branches []string
	for _, r := range refs {
		if r.Name().IsBranch() {
			branches = append(branches, r.Name().Short())
		}
	}
	for _, b := range []string{"main", "master"} {
		for _, have := range branches {
			if have == b {
				return b, nil
			}
		}
	}
	if len(branches) == 1 {
		return branches[0], nil
	}
	return "", fmt.Errorf("%s: HEAD names no branch and there is no main or master branch; choose a branch", url)
}

// Fetch brings the mirror of repository id up to date with url, creating
// it when it does not exist: every branch and tag of url, and no ref that
// url no longer has. cred is the repository's credential (none: the zero
// Credential), used for a remote URL; the mirror's config does not keep it.
func (m *Mirrors) Fetch(ctx context.Context, id, url string, cred gitauth.Credential) error {
	path, local, err := IsLocal(url)
	if err != nil {
		return err
	}
	ctx, err = gitremote.Guard(ctx, m.policy, url)
	if err != nil {
		return err
	}
	var auth transport.AuthMethod
	if !local {
		if auth, err = cred.Auth(url); err != nil {
			return err
		}
	}
	l := m.lock(id)
	l.Lock()
	defer l.Unlock()
	dir := m.Dir(id)
	repo, err := git.PlainOpen(dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o750); err != nil {
			return fmt.Errorf("create mirrors directory: %w", err)
		}
		repo, err = git.PlainInit(dir, true)
	}
	if err != nil {
		return fmt.Errorf("open mirror %s: %w", dir, err)
	}
	if local {
		err = m.fetchLocal(ctx, repo, path, url)
	} else {
		err = cred.Explain(fetchRemote(ctx, repo, url, auth))
	}
	if err != nil {
		return err
	}
	// The fetch worked: a repack that fails is not its failure (the next
	// fetch tries again).
	_ = repackIfFragmented(repo, dir)
	return nil
}

// FetchRef brings one more ref of url into the mirror of repository id,
// under its own name: a pull request's head (refs/pull/<n>/head), which
// Fetch does not mirror, so that the heads of a repository's pull
// requests, a fork's included, are fetched only when one is run. Fetch
// must have made the mirror. A ref url does not have is ErrNotFound.
func (m *Mirrors) FetchRef(ctx context.Context, id, url string, cred gitauth.Credential, ref string) error {
	path, local, err := IsLocal(url)
	if err != nil {
		return err
	}
	ctx, err = gitremote.Guard(ctx, m.policy, url)
	if err != nil {
		return err
	}
	l := m.lock(id)
	l.Lock()
	defer l.Unlock()
	repo, err := git.PlainOpen(m.Dir(id))
	if err != nil {
		return fmt.Errorf("open mirror of %s: %w", url, err)
	}
	name := plumbing.ReferenceName(ref)
	if local {
		src, err := openSource(path, url)
		if err != nil {
			return err
		}
		r, err := src.Reference(name, true)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", ref, url, ErrNotFound)
		}
		missing, err := missingObjects(ctx, src.Storer, repo.Storer, []plumbing.Hash{r.Hash()})
		if err != nil {
			return fmt.Errorf("fetch %s of %s: %w", ref, url, err)
		}
		if err := gitcheckout.CopyObjects(ctx, m.sup, src.Storer, repo.Storer, missing); err != nil {
			return fmt.Errorf("fetch %s of %s: copy objects: %w", ref, url, err)
		}
		return repo.Storer.SetReference(plumbing.NewHashReference(name, r.Hash()))
	}
	auth, err := cred.Auth(url)
	if err != nil {
		return err
	}
	err = repo.FetchContext(ctx, &git.FetchOptions{RemoteName: remoteName, RemoteURL: url, Auth: auth,
		RefSpecs: []config.RefSpec{config.RefSpec("+" + ref + ":" + ref)}, Tags: git.NoTags, Force: true})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
		return nil
	case errors.Is(err, git.NoMatchingRefSpecError{}):
		return fmt.Errorf("%s of %s: %w", ref, url, ErrNotFound)
	}
	return cred.Explain(fmt.Errorf("%w %s: %w", ErrUnreadable, url, err))
}

// RemoveRef removes a ref FetchRef brought (a closed pull request's
// head); one that is not there is no error.
func (m *Mirrors) RemoveRef(id, ref string) error {
	l := m.lock(id)
	l.Lock()
	defer l.Unlock()
	repo, err := git.PlainOpen(m.Dir(id))
	if err != nil {
		return fmt.Errorf("open mirror %s: %w", m.Dir(id), err)
	}
	if err := repo.Storer.RemoveReference(plumbing.ReferenceName(ref)); err != nil && !errors.Is(err, plumbing.ErrReferenceNotFound) {
		return fmt.Errorf("remove %s: %w", ref, err)
	}
	return nil
}

// MaxPacks is how many pack files a mirror may have before a fetch repacks
// it into one. Every fetch that brings objects adds a pack, and every read
// of an object looks through the index of each pack, so a mirror that is
// polled for months would get slower with every fetch.
const MaxPacks = 16

// repackIfFragmented repacks the mirror into one pack when it has more
// than MaxPacks (under the mirror's write lock, like the fetch).
func repackIfFragmented(repo *git.Repository, dir string) error {
	packed, ok := repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return nil
	}
	packs, err := packed.ObjectPacks()
	if err != nil {
		return fmt.Errorf("list packs of mirror %s: %w", dir, err)
	}
	if len(packs) <= MaxPacks {
		return nil
	}
	if err := repo.RepackObjects(&git.RepackConfig{}); err != nil {
		return fmt.Errorf("repack mirror %s: %w", dir, err)
	}
	return nil
}

func openSource(path, url string) (*git.Repository, error) {
	src, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrUnreadable, url, err)
	}
	return src, nil
}

func isMirrored(name plumbing.ReferenceName) bool { return name.IsBranch() || name.IsTag() }

// fetchLocal copies the objects the mirror lacks from the repository at
// path, then makes the mirror's branches and tags equal to the source's.
// (go-git's file transport would run the git-upload-pack binary.)
func (m *Mirrors) fetchLocal(ctx context.Context, dst *git.Repository, path, url string) error {
	src, err := openSource(path, url)
	if err != nil {
		return err
	}
	iter, err := src.References()
	if err != nil {
		return fmt.Errorf("list refs of %s: %w", url, err)
	}
	want := map[plumbing.ReferenceName]plumbing.Hash{}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if isMirrored(r.Name()) && r.Type() == plumbing.HashReference {
			want[r.Name()] = r.Hash()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list refs of %s: %w", url, err)
	}
	var tips []plumbing.Hash
	for _, h := range want {
		tips = append(tips, h)
	}
	missing, err := missingObjects(ctx, src.Storer, dst.Storer, tips)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	if len(missing) > 0 {
		if err := gitcheckout.CopyObjects(ctx, m.sup, src.Storer, dst.Storer, missing); err != nil {
			return fmt.Errorf("fetch %s: copy objects: %w", url, err)
		}
	}
	if err := syncRefs(dst, want); err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	if head, err := src.Storer.Reference(plumbing.HEAD); err == nil && head.Type() == plumbing.SymbolicReference {
		if err := dst.Storer.SetReference(head); err != nil {
			return fmt.Errorf("fetch %s: set HEAD: %w", url, err)
		}
	}
	return nil
}

// missingObjects walks from tips through src and returns the objects dst
// does not have. An object dst has comes with everything it reaches (the
// mirror only ever receives whole closures), so the walk stops there.
func missingObjects(ctx context.Context, src, dst storer.EncodedObjectStorer, tips []plumbing.Hash) ([]plumbing.Hash, error) {
	seen := map[plumbing.Hash]bool{}
	var missing []plumbing.Hash
	stack := append([]plumbing.Hash(nil), tips...)
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		if dst.HasEncodedObject(h) == nil {
			continue
		}
		obj, err := src.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, fmt.Errorf("read object %s: %w", h, err)
		}
		missing = append(missing, h)
		switch obj.Type() {
		case plumbing.CommitObject:
			c, err := object.DecodeCommit(src, obj)
			if err != nil {
				return nil, fmt.Errorf("decode commit %s: %w", h, err)
			}
			stack = append(stack, c.TreeHash)
			stack = append(stack, c.ParentHashes...)
		case plumbing.TreeObject:
			t, err := object.DecodeTree(src, obj)
			if err != nil {
				return nil, fmt.Errorf("decode tree %s: %w", h, err)
			}
			for _, e := range t.Entries {
				if e.Mode != filemode.Submodule {
					stack = append(stack, e.Hash)
				}
			}
		case plumbing.TagObject:
			t, err := object.DecodeTag(src, obj)
			if err != nil {
				return nil, fmt.Errorf("decode tag %s: %w", h, err)
			}
			stack = append(stack, t.Target)
		}
	}
	return missing, nil
}

// syncRefs makes dst's branches and tags exactly want.
func syncRefs(dst *git.Repository, want map[plumbing.ReferenceName]plumbing.Hash) error {
	iter, err := dst.References()
	if err != nil {
		return err
	}
	var stale []plumbing.ReferenceName
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if isMirrored(r.Name()) {
			if _, ok := want[r.Name()]; !ok {
				stale = append(stale, r.Name())
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range stale {
		if err := dst.Storer.RemoveReference(name); err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
	}
	for name, h := range want {
		cur, err := dst.Storer.Reference(name)
		if err == nil && cur.Hash() == h {
			continue
		}
		if err := dst.Storer.SetReference(plumbing.NewHashReference(name, h)); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

func fetchRemote(ctx context.Context, repo *git.Repository, url string, auth transport.AuthMethod) error {
	specs := []config.RefSpec{"+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
	if _, err := repo.Remote(remoteName); errors.Is(err, git.ErrRemoteNotFound) {
		_, err = repo.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{url}, Fetch: specs})
		if err != nil {
			return fmt.Errorf("configure mirror of %s: %w", url, err)
		}
	}
	err := repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RemoteURL:  url,
		Auth:       auth,
		RefSpecs:   specs,
		Tags:       git.NoTags,
		Force:      true,
		Prune:      true,
	})
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate), errors.Is(err, transport.ErrEmptyRemoteRepository):
	default:
		return fmt.Errorf("%w %s: %w", ErrUnreadable, url, err)
	}
	return nil
}

// read runs fn on the mirror of repository id, under its read lock.
func (m *Mirrors) read(id string, fn func(*git.Repository) error) error {
	l := m.lock(id)
	l.RLock()
	defer l.RUnlock()
	repo, err := git.PlainOpen(m.Dir(id))
	if err != nil {
		if errors.Is(err, git.ErrRepositoryNotExists) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mirror of repository %s: %w (fetch it first)", id, ErrNotFound)
		}
		return fmt.Errorf("open mirror of repository %s: %w", id, err)
	}
	return fn(repo)
}

// Branches lists the mirror's branches, sorted.
func (m *Mirrors) Branches(id string) ([]string, error) {
	var out []string
	err := m.read(id, func(repo *git.Repository) error {
		iter, err := repo.Branches()
		if err != nil {
			return err
		}
		return iter.ForEach(func(r *plumbing.Reference) error {
			out = append(out, r.Name().Short())
			return nil
		})
	})
	sort.Strings(out)
	return out, err
}

// Refs lists the mirror's branches and tags (refs/heads/..., refs/tags/...)
// with the object each points to: a commit, or an annotated tag's object
// (Resolve follows it to its commit).
func (m *Mirrors) Refs(id string) (map[string]string, error) {
	out := map[string]string{}
	err := m.read(id, func(repo *git.Repository) error {
		iter, err := repo.References()
		if err != nil {
			return err
		}
		return iter.ForEach(func(r *plumbing.Reference) error {
			if r.Type() == plumbing.HashReference && isMirrored(r.Name()) {
				out[r.Name().String()] = r.Hash().String()
			}
			return nil
		})
	})
	return out, err
}

// BranchHead returns the commit at the tip of branch; ErrNotFound when the
// branch does not exist (or has no commits yet).
func (m *Mirrors) BranchHead(id, branch string) (string, error) {
	var sha string
	err := m.read(id, func(repo *git.Repository) error {
		ref, err := repo.Storer.Reference(plumbing.NewBranchReferenceName(branch))
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			return fmt.Errorf("branch %q: %w", branch, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read branch %q: %w", branch, err)
		}
		sha = ref.Hash().String()
		return nil
	})
	return sha, err
}

// ErrNotCommit says a ref points to a tree or a blob (a tag may), not to a
// commit.
var ErrNotCommit = errors.New("not a commit")

// Resolved is a ref resolved to a commit.
type Resolved struct {
	// Commit is the full sha.
	Commit string
	// Ref is the full ref name (refs/heads/main, refs/tags/v1) or, for a
	// sha, the full sha.
	Ref string
	// Branch is set when the ref is a branch.
	Branch string
}

var hexPrefix = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

// Resolve turns a branch, a tag, a full ref name or a full or abbreviated
// commit sha (at least 4 hex digits) into a commit, in that order of
// preference. It returns ErrNotFound when nothing matches.
func (m *Mirrors) Resolve(id, ref string) (Resolved, error) {
	var out Resolved
	err := m.read(id, func(repo *git.Repository) error {
		var names []plumbing.ReferenceName
		if strings.HasPrefix(ref, "refs/") {
			names = append(names, plumbing.ReferenceName(ref))
		} else {
			names = append(names, plumbing.NewBranchReferenceName(ref), plumbing.NewTagReferenceName(ref))
		}
		for _, name := range names {
			r, err := repo.Reference(name, true)
			if errors.Is(err, plumbing.ErrReferenceNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read ref %s: %w", name, err)
			}
			c, err := peel(repo, r.Hash())
			if err != nil {
				return fmt.Errorf("ref %s: %w", name, err)
			}
			out = Resolved{Commit: c.Hash.String(), Ref: name.String()}
			if name.IsBranch() {
				out.Branch = name.Short()
			}
			return nil
		}
		if hexPrefix.MatchString(ref) {
			h, err := repo.ResolveRevision(plumbing.Revision(ref))
			if err == nil {
				out = Resolved{Commit: h.String(), Ref: h.String()}
				return nil
			}
		}
		return fmt.Errorf("ref %q is no branch, tag or commit of the repository: %w", ref, ErrNotFound)
	})
	return out, err
}

// peel follows annotated tags to the commit they name.
func peel(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 10 {
		obj, err := repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, fmt.Errorf("%s is a %s: %w", h, obj.Type(), ErrNotCommit)
		}
	}
	return nil, fmt.Errorf("%s: tags nested too deep", h)
}

// Commit returns one commit; ErrNotFound when the mirror lacks it.
func (m *Mirrors) Commit(id, sha string) (domain.Commit, error) {
	var out domain.Commit
	err := m.read(id, func(repo *git.Repository) error {
		c, err := commitObject(repo, sha)
		if err != nil {
			return err
		}
		out = toCommit(c)
		return nil
	})
	return out, err
}

func commitObject(repo *git.Repository, sha string) (*object.Commit, error) {
	if !plumbing.IsHash(sha) {
		return nil, fmt.Errorf("commit %q is not a full sha: %w", sha, ErrNotFound)
	}
	c, err := repo.CommitObject(plumbing.NewHash(sha))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("commit %s: %w", sha, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", sha, err)
	}
	return c, nil
}

func toCommit(c *object.Commit) domain.Commit {
	return domain.Commit{
		SHA:     c.Hash.String(),
		Message: strings.TrimRight(c.Message, "\n"),
		Author:  fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
		Time:    c.Author.When.UTC(),
	}
}

// ReadFile returns the content of path at commit sha. It returns
// ErrNotFound when the commit has no such file and ErrTooLarge when it is
// bigger than maxSize bytes.
func (m *Mirrors) ReadFile(id, sha, path string, maxSize int64) ([]byte, error) {
	var out []byte
	err := m.read(id, func(repo *git.Repository) error {
		c, err := commitObject(repo, sha)
		if err != nil {
			return err
		}
		f, err := c.File(path)
		if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound) {
			return fmt.Errorf("%s at commit %s: %w", path, sha, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read %s at commit %s: %w", path, sha, err)
		}
		if f.Size > maxSize {
			return fmt.Errorf("%s at commit %s is %d bytes, more than %d: %w", path, sha, f.Size, maxSize, ErrTooLarge)
		}
		out, err = readBlob(f, maxSize)
		if err != nil {
			return fmt.Errorf("read %s at commit %s: %w", path, sha, err)
		}
		return nil
	})
	return out, err
}

// DirFile is a file of a folder at a commit, as ReadDir reads it.
type DirFile struct {
	// Path is the file's path in the repository.
	Path string
	Data []byte
	// TooLarge says the file is over ReadDir's maxSize, and Data is then
	// nil.
	TooLarge bool
	// Symlink says the entry is a symbolic link, not read.
	Symlink bool
}

// ReadDir reads the files directly in dir (not in its folders) at commit
// sha whose names end in suffix, by name, each when it is at most maxSize
// bytes; symbolic links so named are listed, not followed. A missing dir has no files. More than maxFiles such files is
// ErrTooMany, read before any file is.
func (m *Mirrors) ReadDir(id, sha, dir, suffix string, maxFiles int, maxSize int64) ([]DirFile, error) {
	var out []DirFile
	err := m.read(id, func(repo *git.Repository) error {
		c, err := commitObject(repo, sha)
		if err != nil {
			return err
		}
		root, err := c.Tree()
		if err != nil {
			return fmt.Errorf("read the tree of commit %s: %w", sha, err)
		}
		tree, err := root.Tree(dir)
		if errors.Is(err, object.ErrDirectoryNotFound) || errors.Is(err, object.ErrEntryNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s at commit %s: %w", dir, sha, err)
		}
		var files []object.TreeEntry
		for _, e := range tree.Entries {
			if strings.HasSuffix(e.Name, suffix) && e.Mode.IsFile() { // symbolic links too
				files = append(files, e)
			}
		}
		if len(files) > maxFiles {
			return fmt.Errorf("%s at commit %s has %d files named *%s, more than %d: %w", dir, sha, len(files), suffix, maxFiles, ErrTooMany)
		}
		slices.SortFunc(files, func(a, b object.TreeEntry) int { return strings.Compare(a.Name, b.Name) })
		for _, e := range files {
			// The blob by its hash: a name go-git would refuse to read a
			// file by (a control character in it) is the caller's to
			// judge, not a failure to read the mirror.
			df := DirFile{Path: dir + "/" + e.Name, Symlink: e.Mode == filemode.Symlink}
			if df.Symlink {
				out = append(out, df)
				continue
			}
			blob, err := repo.BlobObject(e.Hash)
			if err != nil {
				return fmt.Errorf("read %q at commit %s: %w", df.Path, sha, err)
			}
			df.TooLarge = blob.Size > maxSize
			if !df.TooLarge {
				if df.Data, err = readBlob(blob, maxSize); err != nil {
					return fmt.Errorf("read %q at commit %s: %w", df.Path, sha, err)
				}
			}
			out = append(out, df)
		}
		return nil
	})
	return out, err
}

// readBlob reads a blob's content, at most maxSize+1 bytes of it.
func readBlob(f interface{ Reader() (io.ReadCloser, error) }, maxSize int64) ([]byte, error) {
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, maxSize+1))
}

// Log lists the commits reachable from to and not from from (from may be
// empty: from the root), newest first by committer time, at most limit
// (0: no limit).
func (m *Mirrors) Log(ctx context.Context, id, from, to string, limit int) ([]domain.Commit, error) {
	var out []domain.Commit
	err := m.read(id, func(repo *git.Repository) error {
		toCommit0, err := commitObject(repo, to)
		if err != nil {
			return err
		}
		exclude := map[plumbing.Hash]bool{}
		if from != "" {
			fromCommit, err := commitObject(repo, from)
			if err != nil {
				return err
			}
			err = object.NewCommitPreorderIter(fromCommit, nil, nil).ForEach(func(c *object.Commit) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				exclude[c.Hash] = true
				return nil
			})
			if err != nil {
				return fmt.Errorf("walk history of %s: %w", from, err)
			}
		}
		iter := object.NewCommitIterCTime(toCommit0, exclude, nil)
		defer iter.Close()
		err = iter.ForEach(func(c *object.Commit) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			out = append(out, toCommit(c))
			if limit > 0 && len(out) >= limit {
				return storer.ErrStop
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("walk history of %s: %w", to, err)
		}
		return nil
	})
	return out, err
}

// Changes lists the paths that differ between commit sha and base, at
// most limit of them (complete says they are all); base is the commit the
// branch held before (its last run's) when that is an ancestor of sha,
// else ignored for sha's first parent (none for a root commit: every path
// of sha is changed).
func (m *Mirrors) Changes(ctx context.Context, id, base, sha string, limit int) (paths []string, complete bool, err error) {
	err = m.read(id, func(repo *git.Repository) error {
		to, err := commitObject(repo, sha)
		if err != nil {
			return err
		}
		var from *object.Commit
		if base != "" && base != sha {
			if b, err := commitObject(repo, base); err == nil {
				if ok, err := b.IsAncestor(to); err == nil && ok {
					from = b
				}
			}
		}
		if from == nil && to.NumParents() > 0 {
			if from, err = to.Parent(0); err != nil {
				return fmt.Errorf("read the parent of %s: %w", sha, err)
			}
		}
		toTree, err := to.Tree()
		if err != nil {
			return fmt.Errorf("read the tree of %s: %w", sha, err)
		}
		var fromTree *object.Tree // none: every path of sha is new
		if from != nil {
			if fromTree, err = from.Tree(); err != nil {
				return fmt.Errorf("read the tree of %s: %w", from.Hash, err)
			}
		}
		changes, err := object.DiffTreeWithOptions(ctx, fromTree, toTree, &object.DiffTreeOptions{})
		if err != nil {
			return fmt.Errorf("compare %s with the commit before: %w", sha, err)
		}
		seen := map[string]bool{}
		complete = true
		for _, c := range changes {
			for _, name := range []string{c.From.Name, c.To.Name} {
				if name == "" || seen[name] {
					continue
				}
				if len(paths) == limit {
					complete = false
					return nil
				}
				seen[name] = true
				paths = append(paths, name)
			}
		}
		return nil
	})
	return paths, complete, err
}
