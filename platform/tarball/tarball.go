// Package tarball writes trees of files a step left behind into gzipped tar
// archives, and extracts such archives again, for the stage caches
// (stepcache) and the artifacts that are directories or globs (artifacts).
//
// Both directions are hostile. Write keeps only directories and regular
// files, reads each file through os.Root without waiting on a named pipe
// (stepfile), and stops at its limits. Extract takes only directories and
// regular files at clean relative names that the caller places, writes
// through os.Root, never replaces a file that is there, writes each file
// whole (next to its place, then renamed) and stops at its limits, the
// inflated size included.
package tarball

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/sluicehq/sluice/platform/stepfile"
)

// ErrTooLarge is an archive past its limits: content, entries, or what it
// inflates to. ErrTooManyEntries is the entries' limit, and wraps it.
var ErrTooLarge = errors.New("larger than the limit")

// ErrTooManyEntries is an archive with more entries than its limit, or a
// tree that holds more files than it may walk.
var ErrTooManyEntries = fmt.Errorf("%w: too many files", ErrTooLarge)

// ErrMalformed is an archive that cannot be read: not a gzipped tar, or
// cut short.
var ErrMalformed = errors.New("not a readable gzipped tar")

// Limits bound an archive.
type Limits struct {
	// Bytes bounds the files' content, and what Write writes (compressed).
	Bytes int64
	// Entries bounds the entries kept (directories and files) or, in
	// Extract, read (those skipped too); Write walks at most ten times as
	// many, those it leaves out included.
	Entries int
	// Replace lets Extract replace a file that is there (never a
	// directory); without it such a file is kept.
	Replace bool
}

// Writer writes a gzipped tar.
type Writer struct {
	tw      *tar.Writer
	zw      *gzip.Writer
	lim     Limits
	files   int
	entries int
	walked  int
	content int64
}

// NewWriter writes an archive to w within lim.
func NewWriter(w io.Writer, lim Limits) *Writer {
	zw, _ := gzip.NewWriterLevel(&countingWriter{w: w, left: lim.Bytes}, gzip.BestSpeed) // a valid level
	return &Writer{tw: tar.NewWriter(zw), zw: zw, lim: lim}
}

// Files is how many regular files were written.
func (w *Writer) Files() int { return w.files }

// Close ends the archive.
func (w *Writer) Close() error {
	if err := w.tw.Close(); err != nil {
		return err
	}
	return w.zw.Close()
}

// Tree adds what is at rel in root (a directory and what is under it, or
// a file) under the name as ("" for the archive's top, where rel itself
// gets no entry). With match set, only the regular files whose path in
// root it accepts are added, and no directory entries (their files' names
// imply them). A rel that does not exist adds nothing.
func (w *Writer) Tree(ctx context.Context, root *os.Root, rel, as string, match func(p string) bool) error {
	return fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == rel {
			return fs.SkipAll // not there: nothing to add
		}
		if err != nil {
			return err
		}
		if w.walked++; w.walked > 10*w.lim.Entries {
			return fmt.Errorf("%w: more than %d files to look through", ErrTooManyEntries, 10*w.lim.Entries)
		}
		if w.walked%1000 == 0 && ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var under string // p's path below rel
		switch {
		case p == rel:
		case rel == ".":
			under = p
		default:
			under = strings.TrimPrefix(p, rel+"/")
		}
		name := path.Join(as, under)
		switch {
		case d.IsDir() && (match != nil || name == ""):
			return nil
		case !d.IsDir() && !d.Type().IsRegular():
			return nil // symbolic links and the like are not kept
		case match != nil && !match(p):
			return nil
		}
		if w.entries++; w.entries > w.lim.Entries {
			return fmt.Errorf("%w: more than %d", ErrTooManyEntries, w.lim.Entries)
		}
		if d.IsDir() {
			return w.tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755, Format: tar.FormatPAX})
		}
		if name == "" {
			name = path.Base(p)
		}
		// stepfile opens without waiting (a file swapped for a named pipe
		// since the walk is refused, not waited on) and asks the open file
		// what it is.
		f, info, err := stepfile.Open(root, p)
		if errors.As(err, new(*stepfile.NotRegularError)) || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		if w.content += info.Size(); w.content > w.lim.Bytes {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, w.lim.Bytes)
		}
		hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: info.Size(), ModTime: info.ModTime(), Format: tar.FormatPAX}
		if info.Mode()&0o111 != 0 {
			hdr.Mode = 0o755
		}
		if err := w.tw.WriteHeader(hdr); err != nil {
			return err
		}
		w.files++
		// A file that changed size since it was opened fails the archive.
		_, err = io.CopyN(w.tw, f, info.Size())
		return err
	})
}

// countingWriter fails past a limit.
type countingWriter struct {
	w    io.Writer
	left int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		return 0, fmt.Errorf("%w: more than the limit once compressed", ErrTooLarge)
	}
	n, err := c.w.Write(p)
	c.left -= int64(n)
	return n, err
}

// PartialPrefix starts the name of a file being extracted (short, so any
// name that fits fits beside it), renamed into place once it is whole; an
// entry with it is skipped.
const PartialPrefix = ".sluice-partial-"

// headerRoom is what Extract lets an archive inflate to per entry beyond
// the content (headers, padding).
const headerRoom = 2048

// Place says where an entry goes: the root and the path inside it, or
// ok false to skip it. name is clean, relative and slash-separated.
type Place func(name string) (root *os.Root, rel string, ok bool, err error)

// Extract reads the gzipped tar r and writes its directories and regular
// files where place puts them, replacing a file that is there only with
// lim.Replace. It reads at
// most lim.Bytes of r, and of content, and lim.Entries entries.
func Extract(r io.Reader, lim Limits, place Place) (files int, err error) {
	zr, err := gzip.NewReader(io.LimitReader(r, lim.Bytes+1))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// What the archive inflates to, headers and skipped entries included,
	// is bounded too.
	inflated := &limitedReader{r: zr, left: lim.Bytes + int64(lim.Entries)*headerRoom}
	tr := tar.NewReader(inflated)
	entries, left := 0, lim.Bytes
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				err = fmt.Errorf("%w: %w", ErrMalformed, err)
			}
			return files, err
		}
		if entries++; entries > lim.Entries {
			return files, fmt.Errorf("%w: more than %d entries", ErrTooManyEntries, lim.Entries)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		clean := path.Clean(name)
		if clean != name || name == "" || !filepath.IsLocal(filepath.FromSlash(clean)) || strings.HasPrefix(path.Base(clean), PartialPrefix) ||
			(hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeReg) {
			continue
		}
		root, rel, ok, err := place(clean)
		if err != nil {
			return files, err
		}
		if !ok {
			continue
		}
		if hdr.Typeflag == tar.TypeDir {
			if err := root.MkdirAll(rel, 0o755); err != nil {
				return files, err
			}
			continue
		}
		if hdr.Size < 0 || hdr.Size > left {
			return files, fmt.Errorf("%w: %s would pass %d bytes", ErrTooLarge, clean, lim.Bytes)
		}
		left -= hdr.Size
		written, err := writeFile(root, rel, hdr, tr, lim.Replace)
		if err != nil {
			return files, fmt.Errorf("write %s: %w", clean, err)
		}
		if written {
			files++
		}
	}
}

// writeFile writes the archive's current file to rel, unless something is
// there already; written says it did.
func writeFile(root *os.Root, rel string, hdr *tar.Header, content io.Reader, replace bool) (written bool, err error) {
	if _, err := root.Lstat(rel); err == nil && !replace {
		return false, nil
	}
	if parent := path.Dir(rel); parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return false, err
		}
	}
	mode := os.FileMode(0o644)
	if hdr.Mode&0o111 != 0 {
		mode = 0o755
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(rel), PartialPrefix+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			_ = root.Remove(tmp)
		}
	}()
	_, err = io.CopyN(f, content, hdr.Size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if !hdr.ModTime.IsZero() {
		_ = root.Chtimes(tmp, hdr.ModTime, hdr.ModTime)
	}
	return true, root.Rename(tmp, rel)
}

// limitedReader fails with ErrTooLarge past left bytes.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, fmt.Errorf("%w: the archive inflates past it", ErrTooLarge)
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
