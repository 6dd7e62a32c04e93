package release

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/retry"
)

// StateBucket is the JetStream object store that keeps the environments'
// deploy state between deploys, one object per repository and environment
// holding a tar of the directory (deploy/nats/objectstores declares it;
// release owns it). So the state is not tied to one replica's volume: any
// replica restores it under the environment's lock before the deploy,
// verify and rollback commands run, and saves it back once they ended.
const StateBucket = "sluice-release-state"

// maxStateEntries bounds the files and directories of a deploy state.
const maxStateEntries = 100000

// statePatience is how long saving a deploy state is tried again while
// the store does not answer.
const statePatience = 30 * time.Second

// stateAttemptTimeout bounds one attempt to store a deploy state.
const stateAttemptTimeout = 8 * time.Second

// errStateRefused marks a deploy state that cannot be used: too large, too
// many entries, or an archive with entries that are not plain files and
// directories inside the state directory. No retry helps; the deploy
// fails with it.
var errStateRefused = errors.New("deploy state refused")

// StateObject is the object that keeps repository's state in environment.
func StateObject(repository, environment string) string {
	return url.PathEscape(repository) + "/" + url.PathEscape(environment) + ".tar"
}

// deployState is an environment's state directory ($SLUICE_STATE_DIR),
// restored from the state store for one deploy.
type deployState struct {
	dir    string
	object string
	// problem says why the state could not be restored (errStateRefused);
	// the deploy fails with it.
	problem string
	// notes are lines for the deploy's log.
	notes []string
	max   int
	obs   jetstream.ObjectStore
}

// restoreState restores the deploy state of repository in environment
// into its directory, emptied first. A state the store does not have yet
// is the directory as it is (a state kept there before the store was, or
// none), saved with the deploy. An error is the store's (or ctx's): no
// deploy runs with a state that could not be read.
func (s *Service) restoreState(ctx context.Context, repository, environment string) (*deployState, error) {
	st := &deployState{
		dir:    StateDir(s.cfg.DataDir, repository, environment),
		object: StateObject(repository, environment),
		max:    s.cfg.MaxStateSize,
	}
	obs, err := s.js.ObjectStore(ctx, StateBucket)
	if err != nil {
		return nil, fmt.Errorf("open the deploy state store %s: %w", StateBucket, err)
	}
	st.obs = obs
	info, err := obs.GetInfo(ctx, st.object)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
		if err := os.MkdirAll(st.dir, 0o755); err != nil {
			return nil, fmt.Errorf("create the state directory: %w", err)
		}
		if entries, err := os.ReadDir(st.dir); err == nil && len(entries) > 0 {
			st.notes = append(st.notes, "state: none stored yet; using the files kept in "+st.dir+" and storing them after the deploy")
		}
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("look up the deploy state %s: %w", st.object, err)
	}
	if info.Size > uint64(st.max) {
		st.problem = st.tooLarge(int64(info.Size)).Error()
		return st, nil
	}
	if err := os.RemoveAll(st.dir); err != nil {
		return nil, fmt.Errorf("empty the state directory: %w", err)
	}
	if err := os.MkdirAll(st.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create the state directory: %w", err)
	}
	obj, err := obs.Get(ctx, st.object)
	if err != nil {
		return nil, fmt.Errorf("read the deploy state %s: %w", st.object, err)
	}
	defer func() { _ = obj.Close() }()
	_, err = untarState(io.LimitReader(obj, int64(st.max)+1), st.dir, st.max, maxStateEntries)
	switch {
	case errors.Is(err, errStateRefused):
		_ = os.RemoveAll(st.dir)
		st.problem = err.Error()
		return st, nil
	case err != nil:
		_ = os.RemoveAll(st.dir)
		return nil, fmt.Errorf("read the deploy state %s: %w", st.object, err)
	}
	return st, nil
}

// tooLarge is the error of a state of size bytes over the limit.
func (st *deployState) tooLarge(size int64) error {
	return fmt.Errorf("%w: the deploy state is %d bytes or more, larger than the max-state-size setting allows (%d bytes; $SLUICE_RELEASE_MAX_STATE_SIZE): keep less in $SLUICE_STATE_DIR, or raise the setting",
		errStateRefused, size, st.max)
}

// save stores the state directory as it is now, replacing what the store
// had; skipped are what a state does not keep (symbolic links, devices),
// said in the returned notes. It is tried again while the store does not
// answer, for statePatience at most.
func (st *deployState) save(ctx context.Context, tmpDir string) ([]string, error) {
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, fmt.Errorf("save the deploy state: %w", err)
	}
	f, err := os.CreateTemp(tmpDir, "state-*.tar")
	if err != nil {
		return nil, fmt.Errorf("save the deploy state: %w", err)
	}
	defer func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}()
	skipped, err := tarState(st.dir, &limitedWriter{w: f, left: int64(st.max), over: st.tooLarge})
	if err != nil {
		return nil, err
	}
	err = retry.Do(ctx, retry.Backoff{Initial: time.Second, Max: 5 * time.Second}, func(ctx context.Context) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return retry.Permanent(err)
		}
		// Each attempt is bounded: a Put whose chunks go unanswered (a NATS
		// node lost while it ran) waits for its context, so one attempt
		// would otherwise use all of statePatience while later ones succeed.
		actx, cancel := context.WithTimeout(ctx, stateAttemptTimeout)
		defer cancel()
		_, err := st.obs.Put(actx, jetstream.ObjectMeta{Name: st.object, Description: "the deploy state of " + st.object}, f)
		return err
	}, retry.GiveUpAfter(statePatience))
	if err != nil {
		return skipped, fmt.Errorf("store the deploy state %s: %w", st.object, err)
	}
	return skipped, nil
}

// limitedWriter fails once more than left bytes are written.
type limitedWriter struct {
	w    io.Writer
	left int64
	n    int64
	over func(int64) error
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.n += int64(len(p))
	if int64(len(p)) > l.left {
		return 0, l.over(l.n)
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// tarState writes dir as a tar to w, deterministically: entries in lexical
// order, with their permissions and nothing else (no times, owners or
// names of owners). Only directories and regular files are kept; what it
// skips it says.
func tarState(dir string, w io.Writer) ([]string, error) {
	tw := tar.NewWriter(w)
	var skipped []string
	entries := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Mode: int64(info.Mode().Perm()), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case info.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		default:
			skipped = append(skipped, fmt.Sprintf("state: not stored: %s (%s; a state keeps regular files and directories only)", name, info.Mode().Type()))
			return nil
		}
		if entries++; entries > maxStateEntries {
			return fmt.Errorf("%w: the deploy state has more than %d files and directories", errStateRefused, maxStateEntries)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		// The size is the header's: a file that grows meanwhile is cut.
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		if errors.Is(err, errStateRefused) {
			return skipped, err
		}
		return skipped, fmt.Errorf("archive the deploy state: %w", err)
	}
	return skipped, nil
}

// untarState extracts the archive r into dir, an empty directory, and
// returns how many entries it made. The archive is hostile: only regular
// files and directories are taken, at relative paths that stay inside dir
// (os.Root holds every file operation inside it), at most maxEntries of
// them and max bytes of content; anything else refuses the whole
// archive (errStateRefused).
func untarState(r io.Reader, dir string, max, maxEntries int) (int, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer func() { _ = root.Close() }()
	tr := tar.NewReader(r)
	n := 0
	var size int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("%w: not a readable archive: %w", errStateRefused, err)
		}
		if n++; n > maxEntries {
			return n, fmt.Errorf("%w: the archive has more than %d entries", errStateRefused, maxEntries)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if name == "" || strings.Contains(name, "\\") || !filepath.IsLocal(filepath.FromSlash(name)) || path.Clean(name) != name {
			return n, fmt.Errorf("%w: entry %q is not a path inside the state directory", errStateRefused, hdr.Name)
		}
		local := filepath.FromSlash(name)
		perm := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(local, perm|0o700); err != nil {
				return n, fmt.Errorf("%w: entry %q: %w", errStateRefused, hdr.Name, err)
			}
		case tar.TypeReg:
			if size += hdr.Size; hdr.Size < 0 || size > int64(max) {
				return n, fmt.Errorf("%w: the archive's files hold more than max-state-size (%d bytes)", errStateRefused, max)
			}
			if err := writeStateFile(root, local, perm, tr, hdr.Size); err != nil {
				return n, fmt.Errorf("%w: entry %q: %w", errStateRefused, hdr.Name, err)
			}
		default:
			return n, fmt.Errorf("%w: entry %q is not a regular file or a directory (tar type %q)", errStateRefused, hdr.Name, string(hdr.Typeflag))
		}
	}
}

// writeStateFile makes the new file name under root with size bytes of r.
func writeStateFile(root *os.Root, name string, perm fs.FileMode, r io.Reader, size int64) error {
	if dir := filepath.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm|0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// stateTmpDir is where archives of states are made before they are stored.
func (s *Service) stateTmpDir() string { return filepath.Join(s.cfg.DataDir, "workspaces") }
