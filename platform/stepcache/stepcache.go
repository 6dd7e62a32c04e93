// Package stepcache keeps a stage's dependency caches between runs: the
// directories a pipeline's cache: entry names (a Go module cache, a build
// cache) are archived into the stage's JetStream object store after its
// steps succeeded, under a key evaluated from the run (ParseKey), and
// restored into the next run's workspace and home before its first step.
//
// Caches are scoped by repository and branch: a run restores its branch's
// cache of the key, else the repository's default branch's, and saves to
// its own branch only, so a branch cannot change what another restores.
// A cache never fails a stage: a restore or save that fails is logged in
// the stage's log and the stage goes on without it.
//
// An archive in the store is hostile on the way back: Restore writes only
// directories and regular files, only under the paths the pipeline names
// now, through os.Root (nothing outside the workspace and home, symbolic
// links included), and stops at the size and file limits. Save archives
// no symbolic links.
//
// The store is bounded by the services, not by the bucket: after each
// save the caches unused for cache-max-age go, then the least recently
// used ones until all of them fit in cache-max-size.
package stepcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/tarball"
)

// The stages' cache stores (deploy/nats/objectstores declares them; each
// stage owns its own).
const (
	BuildBucket = "sluice-build-caches"
	TestBucket  = "sluice-test-caches"
)

// Spec is one cache: paths relative to the workspace, or to the steps'
// home when they start with "~/", kept under the key Key gives.
type Spec struct {
	Key   string
	Paths []string
}

// Scope is whose caches a stage reads and writes.
type Scope struct {
	// RepositoryID, and its name (for the object's description).
	RepositoryID, Repository string
	// Branch is the run's branch; Ref stands for it when the run is not
	// on a branch (a tag).
	Branch, Ref string
	// DefaultBranch is the repository's branch, restored from when Branch
	// has no cache of the key ("" when not known).
	DefaultBranch string
}

// Dirs are where the steps' files are: the workspace, and the home "~/"
// paths are relative to.
type Dirs struct {
	Workspace, Home string
}

// ErrTooLarge is a cache that holds more than cache-max-entry-size (or
// more files than MaxFiles): nothing of it was stored.
var ErrTooLarge = tarball.ErrTooLarge

// MaxFiles bounds the entries of one cache.
const MaxFiles = 500_000

// Store is one stage's cache store.
type Store struct {
	obs    jetstream.ObjectStore
	bucket string
	limits Limits
	log    *slog.Logger
}

// Open binds bucket as a cache store; it fails when the bucket does not
// exist (it is provisioned, never created here).
func Open(ctx context.Context, js jetstream.JetStream, bucket string, limits Limits, log *slog.Logger) (*Store, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", bucket, err)
	}
	return &Store{obs: obs, bucket: bucket, limits: limits.withDefaults(), log: log}, nil
}

// objectName is where the cache of key is kept for scope ("branch:main",
// "ref:refs/tags/v1"): the scope is hashed, so any branch name gives a
// short, valid object name, and its kind is part of it, so a branch
// named like a tag's ref is not the tag.
func objectName(repositoryID, scope, key string) string {
	h := sha256.Sum256([]byte(scope))
	return repositoryID + "/" + hex.EncodeToString(h[:8]) + "/" + key
}

// own is the run's scope, and name it for people.
func (sc Scope) own() (scope, name string) {
	if sc.Branch != "" {
		return "branch:" + sc.Branch, sc.Branch
	}
	return "ref:" + sc.Ref, sc.Ref
}

// candidates are the objects a restore tries, in order.
func (sc Scope) candidates(key string) []string {
	own, _ := sc.own()
	names := []string{objectName(sc.RepositoryID, own, key)}
	if def := "branch:" + sc.DefaultBranch; sc.DefaultBranch != "" && def != own {
		names = append(names, objectName(sc.RepositoryID, def, key))
	}
	return names
}

// Restored is what Restore found.
type Restored struct {
	// Object is the object restored ("" when none was found); Fallback
	// says it is the default branch's.
	Object   string
	Fallback bool
	// Size is the archive's size, Files the files written.
	Size  int64
	Files int
}

// Restore writes scope's cache of key into dirs: the run branch's, else
// the default branch's. It returns a zero Restored when neither has one.
// An error after files were written removes the paths it created, so the
// steps run as they would without the cache.
func (s *Store) Restore(ctx context.Context, sc Scope, key string, paths []string, dirs Dirs) (Restored, error) {
	for i, name := range sc.candidates(key) {
		info, err := s.obs.GetInfo(ctx, name)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return Restored{}, fmt.Errorf("get %s from %s: %w", name, s.bucket, err)
		}
		r := Restored{Object: name, Fallback: i > 0, Size: int64(info.Size)}
		switch {
		case info.Opts != nil && info.Opts.Link != nil:
			// Caches are never links; one could lead into another bucket.
			return r, fmt.Errorf("restore %s: the object is a link, not a cache", name)
		case r.Size > int64(s.limits.MaxEntrySize):
			return r, fmt.Errorf("restore %s: %w (%d bytes)", name, ErrTooLarge, r.Size)
		}
		r.Files, err = s.restore(ctx, name, paths, dirs)
		if err != nil {
			return r, fmt.Errorf("restore %s: %w", name, err)
		}
		// The new meta message is the cache's last use (ModTime), which
		// eviction goes by.
		if err := s.obs.UpdateMeta(ctx, name, info.ObjectMeta); err != nil {
			s.log.Warn("could not record a cache's use; it may be evicted before others", slog.String("object", name), slog.Any("error", err))
		}
		return r, nil
	}
	return Restored{}, nil
}

// stallTimeout is how long a restore waits for the store's next bytes
// before it gives up (an object whose chunks went while it was read would
// otherwise keep it waiting for minutes).
const stallTimeout = 30 * time.Second

// restore reads object name into dirs, giving up when the store sends
// nothing for stallTimeout.
func (s *Store) restore(ctx context.Context, name string, paths []string, dirs Dirs) (int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stalled := errors.New("the store sent nothing for " + stallTimeout.String())
	watchdog := time.AfterFunc(stallTimeout, func() { cancel(stalled) })
	defer watchdog.Stop()
	obj, err := s.obs.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	defer obj.Close()
	n, err := s.extract(&progressReader{r: obj, progress: func() { watchdog.Reset(stallTimeout) }}, paths, dirs)
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, stalled) {
		return n, cause
	}
	return n, err
}

// progressReader calls progress on each read that got something.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.progress()
	}
	return n, err
}

// Saved is what Save stored.
type Saved struct {
	Object string
	// Size is the archive's size, Files the files in it, Evicted the
	// caches removed to make room.
	Size    int64
	Files   int
	Evicted int
}

// Save archives paths of dirs as scope's cache of key on the run's branch
// (replacing one there), then evicts what no longer fits. A path that does
// not exist is left out. It fails with ErrTooLarge, storing nothing, when
// the files hold more than the entry limit.
func (s *Store) Save(ctx context.Context, sc Scope, key string, paths []string, dirs Dirs) (Saved, error) {
	own, branch := sc.own()
	name := objectName(sc.RepositoryID, own, key)
	any, err := exists(paths, dirs)
	if err != nil || !any {
		// Nothing to keep (no path exists): an empty cache would be a hit
		// from now on, and nothing would ever fill it.
		return Saved{}, err
	}
	pr, pw := io.Pipe()
	files := make(chan int, 1)
	go func() {
		n, err := s.archive(ctx, pw, paths, dirs)
		files <- n
		_ = pw.CloseWithError(err)
	}()
	// The put is not cancelled with ctx: the archive's reader fails
	// instead, and the object store then purges what it had stored of the
	// object (with a cancelled context it could not, and the chunks would
	// stay, in no object's name).
	stop := context.AfterFunc(ctx, func() { _ = pr.CloseWithError(context.Cause(ctx)) })
	defer stop()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	meta := jetstream.ObjectMeta{Name: name, Description: fmt.Sprintf("cache %s of repository %s, branch or ref %s", key, sc.Repository, branch)}
	info, err := s.obs.Put(pctx, meta, pr)
	// Ends the archive's writer if the put stopped reading early.
	_ = pr.CloseWithError(errors.New("the put ended"))
	n := <-files
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return Saved{}, err
		}
		return Saved{}, fmt.Errorf("put %s into %s: %w", name, s.bucket, err)
	}
	saved := Saved{Object: name, Size: int64(info.Size), Files: n}
	saved.Evicted, err = s.Evict(ctx, name)
	if err != nil {
		s.log.Warn("could not evict caches", slog.String("bucket", s.bucket), slog.Any("error", err))
	}
	return saved, nil
}

// Evict removes the caches unused for longer than the age limit, then the
// least recently used ones until the rest fit in the size limit, keeping
// keep (the cache just saved). It returns how many it removed.
func (s *Store) Evict(ctx context.Context, keep string) (int, error) {
	infos, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", s.bucket, err)
	}
	slices.SortFunc(infos, func(a, b *jetstream.ObjectInfo) int { return a.ModTime.Compare(b.ModTime) })
	var total int64
	for _, info := range infos {
		total += int64(info.Size)
	}
	cutoff := time.Now().Add(-s.limits.MaxAge)
	removed := 0
	for _, info := range infos {
		if info.Name == keep {
			continue
		}
		if total <= int64(s.limits.MaxSize) && !info.ModTime.Before(cutoff) {
			break
		}
		if err := s.obs.Delete(ctx, info.Name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return removed, fmt.Errorf("delete %s from %s: %w", info.Name, s.bucket, err)
		}
		total -= int64(info.Size)
		removed++
	}
	return removed, nil
}

// saveTimeout bounds one save (which ctx's end also stops).
const saveTimeout = 30 * time.Minute

// The archive's entries are named ws/<path> and home/<path>.
const (
	wsPrefix   = "ws"
	homePrefix = "home"
)

// entryOf is the archive's name for a cache path, as the pipeline wrote
// it; ok is false for a path that is not local.
func entryOf(p string) (string, bool) {
	prefix := wsPrefix
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		prefix, p = homePrefix, rest
	}
	p = path.Clean(strings.TrimPrefix(p, "./"))
	if p == "." {
		return prefix, true
	}
	if strings.Contains(p, `\`) || !filepath.IsLocal(filepath.FromSlash(p)) {
		return "", false
	}
	return prefix + "/" + p, true
}

// within reports whether entry is one of roots or under one.
func within(entry string, roots []string) bool {
	for _, r := range roots {
		if entry == r || strings.HasPrefix(entry, r+"/") {
			return true
		}
	}
	return false
}

// split turns an entry into its directory (workspace or home) and the
// path inside it.
func split(entry string, dirs Dirs) (dir, rel string) {
	prefix, rel, _ := strings.Cut(entry, "/")
	if rel == "" {
		rel = "."
	}
	if prefix == homePrefix {
		return dirs.Home, rel
	}
	return dirs.Workspace, rel
}

// roots opens the workspace and home as os.Roots, as they are needed.
type roots struct {
	dirs   Dirs
	create bool
	open   map[string]*os.Root
}

// of is the root of entry's directory and the path inside it.
func (r *roots) of(entry string) (*os.Root, string, error) {
	dir, rel := split(entry, r.dirs)
	if root := r.open[dir]; root != nil {
		return root, rel, nil
	}
	if r.create {
		// The home is the steps' own (0700), as the executors make it.
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", err
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", err
	}
	if r.open == nil {
		r.open = map[string]*os.Root{}
	}
	r.open[dir] = root
	return root, rel, nil
}

func (r *roots) close() {
	for _, root := range r.open {
		_ = root.Close()
	}
}

// exists reports whether one of paths is there to be saved.
func exists(paths []string, dirs Dirs) (bool, error) {
	rs := &roots{dirs: dirs}
	defer rs.close()
	for _, p := range paths {
		entry, ok := entryOf(p)
		if !ok {
			return false, fmt.Errorf("cache path %q is not inside the workspace or home", p)
		}
		root, rel, err := rs.of(entry)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		if _, err := root.Lstat(rel); err == nil {
			return true, nil
		}
	}
	return false, nil
}

// archive writes paths of dirs to w as a gzipped tar (tarball): no more
// than the entry limit in bytes, before and after compression, and no
// more than MaxFiles entries of any kind.
func (s *Store) archive(ctx context.Context, w io.Writer, paths []string, dirs Dirs) (int, error) {
	tw := tarball.NewWriter(w, tarball.Limits{Bytes: int64(s.limits.MaxEntrySize), Entries: MaxFiles})
	rs := &roots{dirs: dirs}
	defer rs.close()
	for _, p := range paths {
		entry, ok := entryOf(p)
		if !ok {
			return tw.Files(), fmt.Errorf("cache path %q is not inside the workspace or home", p)
		}
		root, rel, err := rs.of(entry)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return tw.Files(), err
		}
		if err := tw.Tree(ctx, root, rel, entry, nil); err != nil {
			return tw.Files(), err
		}
	}
	return tw.Files(), tw.Close()
}

// extract writes the archive r into dirs: only entries under paths, never
// replacing a file that is there (the checkout's, or the artifacts'). On
// an error it removes the paths it created.
func (s *Store) extract(r io.Reader, paths []string, dirs Dirs) (files int, err error) {
	var allowed []string
	for _, p := range paths {
		if e, ok := entryOf(p); ok {
			allowed = append(allowed, e)
		}
	}
	rs := &roots{dirs: dirs, create: true}
	defer rs.close()
	var created []string
	for _, e := range allowed {
		root, rel, err := rs.of(e)
		if err != nil {
			return 0, err
		}
		if _, err := root.Lstat(rel); errors.Is(err, fs.ErrNotExist) {
			created = append(created, e)
		}
	}
	defer func() {
		if err != nil {
			for _, e := range created {
				if root, rel, rerr := rs.of(e); rerr == nil {
					_ = root.RemoveAll(rel)
				}
			}
		}
	}()
	return tarball.Extract(r, tarball.Limits{Bytes: int64(s.limits.MaxEntrySize), Entries: MaxFiles}, func(name string) (*os.Root, string, bool, error) {
		if !within(name, allowed) {
			return nil, "", false, nil // not a path the pipeline caches (now)
		}
		root, rel, err := rs.of(name)
		return root, rel, err == nil, err
	})
}
