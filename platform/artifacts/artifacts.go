// Package artifacts keeps build artifacts in the JetStream object store
// and gets them out again intact: build puts each one with its sha256 and
// size, and test and release fetch it into a workspace, checking both.
// Release copies the artifacts of each release into a store of its own
// (Copy), which keeps them as long as a rollback may need them; the same
// checks apply to every bucket (OpenBucket).
//
// Everything about an artifact that arrives in an event is hostile: its
// name, its object name, the digest and size it claims, and the path in a
// workspace it is to be written to. Fetch refuses a path that leaves its
// directory (also through a symbolic link in a checked-out repository),
// reads no more than the recorded size, and puts the file in place only
// once its digest matched.
package artifacts

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/pathglob"
	"github.com/sluicehq/sluice/platform/tarball"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
)

// Bucket is the object store artifacts are kept in, one object per run and
// artifact (deploy/nats/objectstores/sluice-artifacts.json declares it;
// build owns it, test and release read it).
const Bucket = "sluice-artifacts"

// MaxObjectLen bounds an object's name.
const MaxObjectLen = 255

// Errors that no retry can cure, each wrapped with the artifact's name
// (Permanent reports any of them).
var (
	// ErrNotFound: the object is not in the store (it expired, or the
	// record names another).
	ErrNotFound = errors.New("not in the artifact store")
	// ErrCorrupt: the content does not match the recorded size or sha256.
	ErrCorrupt = errors.New("content does not match the build's record")
	// ErrRefused: the record (name, object, digest, size) or the
	// destination cannot be used: a path that leaves its directory, a
	// directory or a file in the way.
	ErrRefused = errors.New("refused")
	// ErrTooLarge: Put read more than its limit; nothing was stored.
	ErrTooLarge = errors.New("larger than the limit")
)

// Permanent reports whether err is one of the errors a retry cannot cure:
// ErrNotFound, ErrCorrupt, ErrRefused or ErrTooLarge.
func Permanent(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrRefused) || errors.Is(err, ErrTooLarge)
}

// Format is how an artifact's content is kept.
type Format int

const (
	// File is content that is the file itself.
	File Format = iota
	// TarGzip is content that is a gzipped tar (tarball) of the files of a
	// directory or a glob, named relative to it (ArchiveBase).
	TarGzip
)

// Limits of what Fetch unpacks from a TarGzip artifact.
const (
	MaxUnpacked        = 8 << 30
	MaxArchivedEntries = 100_000
)

// Artifact is one stored artifact, as build records it and events carry it.
type Artifact struct {
	// Name is the pipeline's name for it.
	Name string
	// Object is the object's name in Bucket.
	Object string
	// SHA256 is the content's digest, in hex.
	SHA256 string
	// Size is the content's length in bytes.
	Size int64
	// Format is File or TarGzip.
	Format Format
}

// IsGlob reports whether an artifact's path is a glob (it has *, ?, [ or
// {), whose files are kept as a TarGzip.
func IsGlob(p string) bool { return strings.ContainsAny(p, "*?[{") }

// ValidGlob reports whether an artifact's glob path p is one Matcher can
// use.
func ValidGlob(p string) bool { return pathglob.Valid(p) }

// Matcher is what an artifact of path p keeps of the files under its
// ArchiveBase: those its glob matches, or (nil) all of them.
func Matcher(p string) func(string) bool {
	if !IsGlob(p) {
		return nil
	}
	pattern := path.Clean(p)
	return func(name string) bool { return pathglob.Match(pattern, name) }
}

// ArchiveBase is the directory a TarGzip artifact of path p is relative
// to: p itself for a directory, or a glob's folders before its first
// pattern ("." for none).
func ArchiveBase(p string) string {
	if !IsGlob(p) {
		return path.Clean(p)
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		if IsGlob(part) {
			if i == 0 {
				return "."
			}
			return path.Clean(strings.Join(parts[:i], "/"))
		}
	}
	return path.Clean(p)
}

// ObjectName is where the artifact name of run runID is kept.
func ObjectName(runID, name string) string { return runID + "/" + name }

var sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// check refuses a record that cannot name or describe an object.
func (a Artifact) check(needDigest bool) error {
	switch {
	case a.Name == "":
		return fmt.Errorf("artifact with object %q: %w: the name is empty", a.Object, ErrRefused)
	case a.Object == "" || len(a.Object) > MaxObjectLen:
		return fmt.Errorf("artifact %q: %w: object name %q must be 1 to %d bytes", a.Name, ErrRefused, a.Object, MaxObjectLen)
	case !needDigest:
		return nil
	case !sha256Hex.MatchString(a.SHA256):
		return fmt.Errorf("artifact %q: %w: sha256 %q is not 64 hex digits", a.Name, ErrRefused, a.SHA256)
	case a.Size < 0:
		return fmt.Errorf("artifact %q: %w: size %d is negative", a.Name, ErrRefused, a.Size)
	}
	return nil
}

// Store reads and writes artifacts in one object store: Bucket, or
// another that keeps artifacts the same way (OpenBucket).
type Store struct {
	obs    jetstream.ObjectStore
	bucket string
}

// Open binds the artifact store, Bucket; it fails when the bucket does not
// exist (it is provisioned, never created here).
func Open(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	return OpenBucket(ctx, js, Bucket)
}

// OpenBucket binds bucket as an artifact store, as Open does Bucket:
// release keeps the artifacts of its releases in a bucket of its own.
func OpenBucket(ctx context.Context, js jetstream.JetStream, bucket string) (*Store, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", bucket, err)
	}
	return &Store{obs: obs, bucket: bucket}, nil
}

// Bucket is the name of the object store s reads and writes.
func (s *Store) Bucket() string { return s.bucket }

// Put stores what r yields as a.Object, described by description, and
// returns a with the content's SHA256 and Size. It reads at most limit
// bytes: content that goes on (a file that grows while it is read) fails
// the put with ErrTooLarge and leaves nothing stored.
func (s *Store) Put(ctx context.Context, a Artifact, description string, r io.Reader, limit int64) (Artifact, error) {
	if err := a.check(false); err != nil {
		return a, err
	}
	h := sha256.New()
	bounded := &limitedReader{r: r, left: limit}
	info, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: a.Object, Description: description}, io.TeeReader(bounded, h))
	if bounded.over {
		// The object store dropped what it had stored of the object when
		// the read failed.
		return a, fmt.Errorf("artifact %q: %w: more than %d bytes", a.Name, ErrTooLarge, limit)
	}
	if err != nil {
		return a, fmt.Errorf("artifact %q: put %s into %s: %w", a.Name, a.Object, s.bucket, err)
	}
	a.SHA256 = hex.EncodeToString(h.Sum(nil))
	a.Size = int64(info.Size)
	return a, nil
}

// limitedReader reads r until left bytes are read, then fails (and says
// so in over) if r has more.
type limitedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One byte more tells the end of r from content over the limit.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			l.over = true
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// Fetch writes artifact a to the file at rel (slash-separated, relative)
// inside dir, executable, creating the directories it needs inside dir.
// It streams the object to a temporary file next to the destination,
// reading no more than a.Size bytes and one, checks its size and sha256,
// and only then renames it into place (replacing a file there). The error
// names the artifact, and wraps ErrNotFound, ErrCorrupt or ErrRefused
// when no retry can cure it.
func (s *Store) Fetch(ctx context.Context, a Artifact, dir, rel string) (err error) {
	if err := a.check(true); err != nil {
		return err
	}
	if rel == "" || strings.Contains(rel, `\`) || !filepath.IsLocal(filepath.FromSlash(rel)) {
		return fmt.Errorf("artifact %q: %w: path %q is not a relative path inside the workspace", a.Name, ErrRefused, rel)
	}
	rel = path.Clean(rel)

	obj, err := s.obs.Get(ctx, a.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("artifact %q: object %s: %w", a.Name, a.Object, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("artifact %q: get %s from %s: %w", a.Name, a.Object, s.bucket, err)
	}
	defer obj.Close()
	if info, err := obj.Info(); err == nil && int64(info.Size) != a.Size {
		return fmt.Errorf("artifact %q: %w: object %s holds %d bytes, the build recorded %d", a.Name, ErrCorrupt, a.Object, info.Size, a.Size)
	}

	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("artifact %q: %w", a.Name, err)
	}
	defer root.Close()
	// os.Root keeps every step inside dir, symbolic links included.
	if parent := path.Dir(rel); parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("artifact %q: %w: create the directory of %s: %w", a.Name, ErrRefused, rel, err)
		}
	}
	tmp, f, err := createTemp(root, path.Dir(rel))
	if err != nil {
		return fmt.Errorf("artifact %q: %w: create a file next to %s: %w", a.Name, ErrRefused, rel, err)
	}
	defer func() {
		if err != nil {
			_ = root.Remove(tmp)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(obj, a.Size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return fmt.Errorf("artifact %q: %w: object %s fails the store's own digest check: %w", a.Name, ErrCorrupt, a.Object, err)
	case err != nil:
		return fmt.Errorf("artifact %q: read %s: %w", a.Name, a.Object, err)
	case n != a.Size:
		return fmt.Errorf("artifact %q: %w: object %s holds %s bytes, the build recorded %d", a.Name, ErrCorrupt, a.Object, sizeRead(n, a.Size), a.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(a.SHA256) {
		return fmt.Errorf("artifact %q: %w: sha256 is %s, the build recorded %s", a.Name, ErrCorrupt, got, strings.ToLower(a.SHA256))
	}
	if a.Format == TarGzip {
		return s.unpack(root, a, tmp, rel)
	}
	// The object store keeps no file mode; artifacts are usually programs.
	if err := root.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("artifact %q: %w", a.Name, err)
	}
	if err := root.Rename(tmp, rel); err != nil {
		return fmt.Errorf("artifact %q: %w: put it at %s: %w", a.Name, ErrRefused, rel, err)
	}
	return nil
}

// unpack writes the files of the TarGzip artifact a, checked in the file
// tmp (removed after), into the directory rel of root, replacing files
// there, within MaxUnpacked and MaxArchivedEntries.
func (s *Store) unpack(root *os.Root, a Artifact, tmp, rel string) error {
	defer func() { _ = root.Remove(tmp) }()
	f, err := root.Open(tmp)
	if err != nil {
		return fmt.Errorf("artifact %q: %w", a.Name, err)
	}
	defer f.Close()
	// What is in the way (a file, a symbolic link) goes, as a file
	// artifact replaces one.
	if fi, err := root.Lstat(rel); err == nil && !fi.IsDir() {
		if err := root.Remove(rel); err != nil {
			return fmt.Errorf("artifact %q: %w: %s is in the way: %w", a.Name, ErrRefused, rel, err)
		}
	}
	if err := root.MkdirAll(rel, 0o755); err != nil {
		return fmt.Errorf("artifact %q: create the directory %s: %w", a.Name, rel, err)
	}
	dir, err := root.OpenRoot(rel)
	if err != nil {
		return fmt.Errorf("artifact %q: open the directory %s: %w", a.Name, rel, err)
	}
	defer dir.Close()
	_, err = tarball.Extract(f, tarball.Limits{Bytes: MaxUnpacked, Entries: MaxArchivedEntries, Replace: true},
		func(name string) (*os.Root, string, bool, error) { return dir, name, true, nil })
	switch {
	case errors.Is(err, tarball.ErrTooLarge), errors.Is(err, tarball.ErrMalformed):
		// The content is what build stored: no retry unpacks it.
		return fmt.Errorf("artifact %q: %w: unpack into %s: %w", a.Name, ErrRefused, rel, err)
	case err != nil:
		return fmt.Errorf("artifact %q: unpack into %s: %w", a.Name, rel, err)
	}
	return nil
}

// Open opens artifact a for reading. The reader yields its content (no
// more than a.Size bytes and one) and checks it as it goes: content that
// is not the recorded one fails in place of its end with ErrCorrupt, so a
// reader that saw io.EOF has read exactly what the build stored. Close it.
// The error names the artifact, and wraps ErrNotFound or ErrCorrupt when
// no retry can cure it.
func (s *Store) Open(ctx context.Context, a Artifact) (io.ReadCloser, error) {
	if err := a.check(true); err != nil {
		return nil, err
	}
	want, err := hex.DecodeString(strings.ToLower(a.SHA256))
	if err != nil {
		return nil, fmt.Errorf("artifact %q: %w: sha256 %q: %w", a.Name, ErrCorrupt, a.SHA256, err)
	}
	r, obj, err := s.open(ctx, a, want)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{r, obj}, nil
}

// open gets a's object and checks its size; the reader checks its
// content against want, a's sha256. Close the object.
func (s *Store) open(ctx context.Context, a Artifact, want []byte) (*checkedReader, jetstream.ObjectResult, error) {
	obj, err := s.obs.Get(ctx, a.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil, fmt.Errorf("artifact %q: object %s: %w", a.Name, a.Object, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("artifact %q: get %s from %s: %w", a.Name, a.Object, s.bucket, err)
	}
	if info, err := obj.Info(); err == nil && int64(info.Size) != a.Size {
		_ = obj.Close()
		return nil, nil, fmt.Errorf("artifact %q: %w: object %s holds %d bytes, the build recorded %d", a.Name, ErrCorrupt, a.Object, info.Size, a.Size)
	}
	return &checkedReader{r: io.LimitReader(obj, a.Size+1), h: sha256.New(), a: a, want: want}, obj, nil
}

// Copy copies artifact a from s into to as object, streaming, and returns
// a as to keeps it (Object is object). It reads no more than a.Size bytes
// and one, and the object is stored only once its size and sha256 matched
// the record: content that does not match fails the copy with ErrCorrupt
// and leaves nothing in to. It is idempotent: an object already in to with
// a's size and sha256 (an earlier copy) is kept as it is. The error names
// the artifact, and wraps ErrNotFound, ErrCorrupt or ErrRefused when no
// retry can cure it; any other is the stores' (or ctx's).
func (s *Store) Copy(ctx context.Context, a Artifact, to *Store, object, description string) (Artifact, error) {
	if err := a.check(true); err != nil {
		return a, err
	}
	kept := a
	kept.Object = object
	if err := kept.check(true); err != nil {
		return a, err
	}
	want, err := hex.DecodeString(a.SHA256)
	if err != nil {
		return a, fmt.Errorf("artifact %q: %w: sha256 %q: %w", a.Name, ErrRefused, a.SHA256, err)
	}
	info, err := to.obs.GetInfo(ctx, object)
	switch {
	case err == nil && int64(info.Size) == a.Size && digestIs(info.Digest, want):
		return kept, nil
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return a, fmt.Errorf("artifact %q: look up %s in %s: %w", a.Name, object, to.bucket, err)
	}

	r, obj, err := s.open(ctx, a, want)
	if err != nil {
		return a, err
	}
	defer obj.Close()
	_, err = to.obs.Put(ctx, jetstream.ObjectMeta{Name: object, Description: description}, r)
	switch {
	case r.refused != nil:
		// The object store dropped what it had stored of the object when
		// the read failed.
		return a, r.refused
	case errors.Is(err, jetstream.ErrDigestMismatch):
		return a, fmt.Errorf("artifact %q: %w: object %s fails the store's own digest check: %w", a.Name, ErrCorrupt, a.Object, err)
	case err != nil:
		return a, fmt.Errorf("artifact %q: copy %s from %s to %s in %s: %w", a.Name, a.Object, s.bucket, object, to.bucket, err)
	}
	return kept, nil
}

// Delete removes object from s; an object that is not there is no error.
func (s *Store) Delete(ctx context.Context, object string) error {
	if err := s.obs.Delete(ctx, object); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete %s from %s: %w", object, s.bucket, err)
	}
	return nil
}

// digestIs reports whether an object store's digest ("SHA-256=<base64>")
// is want.
func digestIs(digest string, want []byte) bool {
	got, err := jetstream.DecodeObjectDigest(digest)
	return err == nil && strings.HasPrefix(digest, "SHA-256=") && bytes.Equal(got, want)
}

// checkedReader reads the content of a (at most a.Size bytes and one),
// hashing it, and fails in place of its end when the content is not the
// recorded one, so that a put of what it reads stores nothing. refused
// is that failure.
type checkedReader struct {
	r       io.Reader
	h       hash.Hash
	a       Artifact
	want    []byte
	n       int64
	refused error
}

func (c *checkedReader) Read(p []byte) (int, error) {
	if c.refused != nil {
		return 0, c.refused
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	switch {
	case c.n > c.a.Size:
		c.refused = fmt.Errorf("artifact %q: %w: object %s holds more than %d bytes, the build recorded %d", c.a.Name, ErrCorrupt, c.a.Object, c.a.Size, c.a.Size)
	case !errors.Is(err, io.EOF):
		return n, err
	case c.n != c.a.Size:
		c.refused = fmt.Errorf("artifact %q: %w: object %s holds %d bytes, the build recorded %d", c.a.Name, ErrCorrupt, c.a.Object, c.n, c.a.Size)
	case !bytes.Equal(c.h.Sum(nil), c.want):
		c.refused = fmt.Errorf("artifact %q: %w: sha256 is %s, the build recorded %s", c.a.Name, ErrCorrupt, hex.EncodeToString(c.h.Sum(nil)), strings.ToLower(c.a.SHA256))
	default:
		return n, err
	}
	return 0, c.refused
}

// sizeRead says how much was read when at most limit+1 bytes were.
func sizeRead(n, limit int64) string {
	if n > limit {
		return "more than " + strconv.FormatInt(limit, 10)
	}
	return strconv.FormatInt(n, 10)
}

// createTemp makes a new file with a random name in dir inside root.
func createTemp(root *os.Root, dir string) (string, *os.File, error) {
	for range 10 {
		name := path.Join(dir, ".artifact-"+rand.Text())
		f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return name, f, err
	}
	return "", nil, errors.New("no unused temporary name")
}

// FormatToProto is f as events and the API carry it.
func FormatToProto(f Format) buildv1.ArtifactFormat {
	if f == TarGzip {
		return buildv1.ArtifactFormat_ARTIFACT_FORMAT_TAR_GZIP
	}
	return buildv1.ArtifactFormat_ARTIFACT_FORMAT_FILE
}

// FormatFromProto is the format an event or the API names; UNSPECIFIED
// (from a build older than formats) is File.
func FormatFromProto(f buildv1.ArtifactFormat) Format {
	if f == buildv1.ArtifactFormat_ARTIFACT_FORMAT_TAR_GZIP {
		return TarGzip
	}
	return File
}
