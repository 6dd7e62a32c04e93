package tarball_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/tarball"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func openRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Close() })
	return root
}

func extract(t *testing.T, archive []byte, lim tarball.Limits, dir string) (int, error) {
	t.Helper()
	root := openRoot(t, dir)
	return tarball.Extract(bytes.NewReader(archive), lim, func(name string) (*os.Root, string, bool, error) { return root, name, true, nil })
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// A tree written and extracted again is its regular files, named below
// what it was added as; a glob's match keeps some of them.
func TestTreeRoundTrip(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	write(t, filepath.Join(src, "dist/index.html"), "page\n")
	write(t, filepath.Join(src, "dist/js/app.js"), "js\n")
	write(t, filepath.Join(src, "dist/.hidden"), "h\n")
	if err := os.Symlink("/etc/hostname", filepath.Join(src, "dist/link")); err != nil {
		t.Fatal(err)
	}
	root := openRoot(t, src)
	lim := tarball.Limits{Bytes: 1 << 20, Entries: 100}
	for _, tc := range []struct {
		rel, as string
		match   func(string) bool
		want    string
	}{
		{"dist", "", nil, ".hidden index.html js/app.js"},
		{"dist", "ws/dist", nil, "ws/dist/.hidden ws/dist/index.html ws/dist/js/app.js"},
		{".", "", func(p string) bool { return strings.HasSuffix(p, ".js") }, "dist/js/app.js"},
		{"dist/index.html", "", nil, "index.html"},
		{"missing", "", nil, ""},
	} {
		var buf bytes.Buffer
		w := tarball.NewWriter(&buf, lim)
		if err := w.Tree(t.Context(), root, tc.rel, tc.as, tc.match); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		if _, err := extract(t, buf.Bytes(), lim, dst); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(files(t, dst), " "); got != tc.want {
			t.Errorf("Tree(%q as %q) extracted to %q; want %q", tc.rel, tc.as, got, tc.want)
		}
	}

	// Past the limits, the writer stops.
	var buf bytes.Buffer
	w := tarball.NewWriter(&buf, tarball.Limits{Bytes: 4, Entries: 100})
	if err := w.Tree(t.Context(), root, "dist", "", nil); !errors.Is(err, tarball.ErrTooLarge) {
		t.Errorf("a tree over the byte limit: %v; want ErrTooLarge", err)
	}
	w = tarball.NewWriter(&buf, tarball.Limits{Bytes: 1 << 20, Entries: 2})
	if err := w.Tree(t.Context(), root, "dist", "", nil); !errors.Is(err, tarball.ErrTooLarge) {
		t.Errorf("a tree over the entry limit: %v; want ErrTooLarge", err)
	}
}

func archive(t *testing.T, entries ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func reg(name string, size int64) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size}
}

// A hostile archive writes nothing outside, nothing but files and
// directories, and no more than its limits.
func TestExtractRefusesWhatIsNotAFileInside(t *testing.T) {
	t.Parallel()
	lim := tarball.Limits{Bytes: 1 << 20, Entries: 100}
	dir := t.TempDir()
	dst := filepath.Join(dir, "dst")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dst, "up")); err != nil {
		t.Fatal(err)
	}
	n, err := extract(t, archive(t,
		reg("ok", 2),
		reg("../escape", 2),
		reg("/abs", 2),
		reg("a/../../escape2", 2),
		reg("up/through-link", 2),
		reg("a/"+tarball.PartialPrefix+"x", 2),
		&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		&tar.Header{Name: "hard", Typeflag: tar.TypeLink, Linkname: "ok"},
		&tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3},
	), lim, dst)
	if err == nil {
		t.Fatal("a file through a symbolic link out of the directory was written")
	}
	if n != 1 {
		t.Errorf("%d files written; want ok alone", n)
	}
	if got := files(t, dir); strings.Join(got, " ") != "dst/ok dst/up" {
		t.Errorf("files: %v; want dst/ok (and the link up)", got)
	}

	for _, tc := range []struct {
		name    string
		archive []byte
		lim     tarball.Limits
	}{
		{"content past the limit", archive(t, reg("a", 600), reg("b", 600)), tarball.Limits{Bytes: 1000, Entries: 10}},
		{"too many entries", archive(t, reg("a", 1), reg("b", 1), reg("c", 1)), tarball.Limits{Bytes: 1000, Entries: 2}},
		// 64 MiB of zeros inflate from about 64 KiB: past the room the
		// limits leave for headers and content.
		{"a bomb", bomb(t), tarball.Limits{Bytes: 1 << 20, Entries: 10}},
	} {
		if _, err := extract(t, tc.archive, tc.lim, t.TempDir()); !errors.Is(err, tarball.ErrTooLarge) {
			t.Errorf("%s: %v; want ErrTooLarge", tc.name, err)
		}
	}
}

// bomb is an archive of one skipped entry of 64 MiB of zeros.
func bomb(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "zeros", Typeflag: tar.TypeChar, Size: 0}); err != nil {
		t.Fatal(err)
	}
	if err := tw.WriteHeader(&tar.Header{Name: "z", Typeflag: tar.TypeReg, Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(make([]byte, 64<<20)); err != nil {
		t.Fatal(err)
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

// Without Replace a file there stays; with it, it is replaced.
func TestExtractReplacesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	a := archive(t, reg("f", 3))
	for _, replace := range []bool{false, true} {
		dst := t.TempDir()
		write(t, filepath.Join(dst, "f"), "mine")
		if _, err := extract(t, a, tarball.Limits{Bytes: 100, Entries: 10, Replace: replace}, dst); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(filepath.Join(dst, "f"))
		if want := map[bool]string{false: "mine", true: "xxx"}[replace]; string(got) != want {
			t.Errorf("replace %v: f = %q; want %q", replace, got, want)
		}
	}
}
