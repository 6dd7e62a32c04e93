package artifacts_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/tarball"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.KnownLeaks()...) }

// openStore starts a nats-server with the declarations applied (build's
// hold the artifact bucket) and opens the store.
func openStore(t *testing.T) *artifacts.Store {
	t.Helper()
	s, err := artifacts.Open(t.Context(), provision(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// provision starts a nats-server with every declaration applied.
func provision(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := natsprovision.ApplyAll(ctx, js, deploy.NATS(), natsprovision.Options{}); err != nil {
		t.Fatal(err)
	}
	return js
}

var program = []byte("#!/bin/sh\necho hello from the artifact\n")

func put(t *testing.T, s *artifacts.Store, name string, content []byte) artifacts.Artifact {
	t.Helper()
	a, err := s.Put(t.Context(), artifacts.Artifact{Name: name, Object: artifacts.ObjectName("run-1", name)}, "a test artifact", bytes.NewReader(content), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestPutRefusesContentOverTheLimit: content that goes on past the limit
// (a file that grows while build reads it) fails the put and leaves no
// object behind; content of exactly the limit is stored.
func TestPutRefusesContentOverTheLimit(t *testing.T) {
	s := openStore(t)
	limit := int64(len(program))
	a, err := s.Put(t.Context(), artifacts.Artifact{Name: "exact", Object: "run-1/exact"}, "", bytes.NewReader(program), limit)
	if err != nil || a.Size != limit {
		t.Fatalf("content of exactly the limit: %+v, %v", a, err)
	}
	big := artifacts.Artifact{Name: "big", Object: "run-1/big"}
	_, err = s.Put(t.Context(), big, "", bytes.NewReader(append(bytes.Clone(program), 'x')), limit)
	if !errors.Is(err, artifacts.ErrTooLarge) || !artifacts.Permanent(err) || !strings.Contains(err.Error(), `artifact "big"`) {
		t.Fatalf("content over the limit: %v", err)
	}
	big.SHA256 = strings.Repeat("0", 64)
	if err := s.Fetch(t.Context(), big, t.TempDir(), "big"); !errors.Is(err, artifacts.ErrNotFound) {
		t.Fatalf("the refused object was kept: fetch = %v", err)
	}
}

func TestPutThenFetch(t *testing.T) {
	s := openStore(t)
	a := put(t, s, "hello", program)
	sum := sha256.Sum256(program)
	if a.Name != "hello" || a.Object != "run-1/hello" || a.SHA256 != hex.EncodeToString(sum[:]) || a.Size != int64(len(program)) {
		t.Fatalf("Put = %+v", a)
	}

	ws := t.TempDir()
	if err := s.Fetch(t.Context(), a, ws, "bin/hello"); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(ws, "bin", "hello")
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, program) {
		t.Fatalf("fetched %q, %v", got, err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v; want an executable 0755", fi.Mode().Perm())
	}
	assertOnly(t, ws, "bin", "bin/hello")

	// A second fetch replaces the file; the recorded digest may be in
	// upper case.
	if err := os.WriteFile(dst, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	a.SHA256 = strings.ToUpper(a.SHA256)
	if err := s.Fetch(t.Context(), a, ws, "bin/./hello"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, program) {
		t.Errorf("after a second fetch: %q", got)
	}

	empty := put(t, s, "empty", nil)
	if empty.Size != 0 {
		t.Errorf("empty artifact: size %d", empty.Size)
	}
	if err := s.Fetch(t.Context(), empty, ws, "empty"); err != nil {
		t.Errorf("fetch of an empty artifact: %v", err)
	}
}

// assertOnly checks that dir holds exactly the paths given: no temporary
// file is left behind.
func assertOnly(t *testing.T, dir string, want ...string) {
	t.Helper()
	var got []string
	_ = filepath.WalkDir(dir, func(p string, _ os.DirEntry, _ error) error {
		if rel, _ := filepath.Rel(dir, p); rel != "." {
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s holds %q; want %q", dir, got, want)
	}
}

func TestFetchRefusesWhatDoesNotMatchTheRecord(t *testing.T) {
	s := openStore(t)
	a := put(t, s, "hello", program)
	for name, tc := range map[string]struct {
		change func(*artifacts.Artifact)
		want   error
		says   string
	}{
		"wrong sha256":    {func(a *artifacts.Artifact) { a.SHA256 = strings.Repeat("0", 64) }, artifacts.ErrCorrupt, "sha256 is " + a.SHA256 + ", the build recorded " + strings.Repeat("0", 64)},
		"smaller size":    {func(a *artifacts.Artifact) { a.Size-- }, artifacts.ErrCorrupt, "the build recorded"},
		"larger size":     {func(a *artifacts.Artifact) { a.Size += 100 }, artifacts.ErrCorrupt, "the build recorded"},
		"missing object":  {func(a *artifacts.Artifact) { a.Object = "run-2/hello" }, artifacts.ErrNotFound, "object run-2/hello"},
		"no sha256":       {func(a *artifacts.Artifact) { a.SHA256 = "" }, artifacts.ErrRefused, "sha256"},
		"short sha256":    {func(a *artifacts.Artifact) { a.SHA256 = "abc" }, artifacts.ErrRefused, "sha256"},
		"negative size":   {func(a *artifacts.Artifact) { a.Size = -1 }, artifacts.ErrRefused, "size"},
		"no object":       {func(a *artifacts.Artifact) { a.Object = "" }, artifacts.ErrRefused, "object name"},
		"too long object": {func(a *artifacts.Artifact) { a.Object = strings.Repeat("o", 256) }, artifacts.ErrRefused, "object name"},
	} {
		t.Run(name, func(t *testing.T) {
			bad := a
			tc.change(&bad)
			ws := t.TempDir()
			err := s.Fetch(t.Context(), bad, ws, "bin/hello")
			if !errors.Is(err, tc.want) || !artifacts.Permanent(err) {
				t.Fatalf("Fetch = %v; want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), `artifact "hello"`) || !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not name the artifact and say %q", err, tc.says)
			}
			// Nothing is left in the workspace but the directory made for it.
			var left []string
			_ = filepath.WalkDir(ws, func(p string, d os.DirEntry, _ error) error {
				if !d.IsDir() {
					left = append(left, p)
				}
				return nil
			})
			if len(left) != 0 {
				t.Errorf("files left: %q", left)
			}
		})
	}
	unnamed := a
	unnamed.Name = ""
	if err := s.Fetch(t.Context(), unnamed, t.TempDir(), "x"); !errors.Is(err, artifacts.ErrRefused) {
		t.Errorf("no name: %v; want ErrRefused", err)
	}
}

// The destination path comes from a pipeline file and the workspace from a
// checked-out repository: neither may put the artifact outside the
// workspace.
func TestFetchRefusesPathsOutsideTheDirectory(t *testing.T) {
	s := openStore(t)
	a := put(t, s, "hello", program)
	outside := t.TempDir()
	ws := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(ws, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "target"), filepath.Join(ws, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{
		"", ".", "..", "../hello", "a/../../hello", "/etc/hello", `bin\hello`,
		"escape/hello", "escape/deeper/hello", // through a symbolic link
		"file/hello", // a file in the way
		"dir",        // a directory in the way
	} {
		err := s.Fetch(t.Context(), a, ws, rel)
		if !errors.Is(err, artifacts.ErrRefused) || !strings.Contains(err.Error(), `artifact "hello"`) {
			t.Errorf("Fetch to %q = %v; want ErrRefused naming the artifact", rel, err)
		}
	}
	entries, _ := os.ReadDir(outside)
	if len(entries) != 0 {
		t.Errorf("the fetch wrote outside the workspace: %v", entries)
	}
	// A symbolic link at the destination itself is replaced, not followed.
	if err := s.Fetch(t.Context(), a, ws, "dangling"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(ws, "dangling")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("dangling is %v, %v; want the artifact's file", fi, err)
	}
	if _, err := os.Stat(filepath.Join(outside, "target")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the link's target was written: %v", err)
	}
}

func TestTransientErrorsAreNotPermanent(t *testing.T) {
	s := openStore(t)
	a := put(t, s, "hello", program)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Fetch(ctx, a, t.TempDir(), "hello")
	if err == nil || artifacts.Permanent(err) || !strings.Contains(err.Error(), `artifact "hello"`) {
		t.Errorf("Fetch with an ended context = %v; want a retryable error naming the artifact", err)
	}
	if _, err := s.Put(ctx, artifacts.Artifact{Name: "x", Object: "run-1/x"}, "", bytes.NewReader(program), 1<<30); err == nil || artifacts.Permanent(err) {
		t.Errorf("Put with an ended context = %v; want a retryable error", err)
	}
	if _, err := s.Put(t.Context(), artifacts.Artifact{Name: "x"}, "", bytes.NewReader(program), 1<<30); !errors.Is(err, artifacts.ErrRefused) {
		t.Errorf("Put without an object name = %v; want ErrRefused", err)
	}
}

func TestOpenNeedsTheBucket(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifacts.Open(t.Context(), js); err == nil || !strings.Contains(err.Error(), artifacts.Bucket) {
		t.Errorf("Open without the bucket = %v; want an error naming %s", err, artifacts.Bucket)
	}
}

// TestCopyKeepsTheArtifactInAnotherBucket: Copy streams an artifact into
// another bucket (release's) under a name of its own; the copy is fetched
// from there once the original is gone, a second copy is a no-op, and
// content that does not match the record is not copied.
func TestCopyKeepsTheArtifactInAnotherBucket(t *testing.T) {
	js := provision(t)
	from, err := artifacts.Open(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	const keep = "sluice-release-artifacts"
	to, err := artifacts.OpenBucket(t.Context(), js, keep)
	if err != nil {
		t.Fatal(err)
	}
	if to.Bucket() != keep || from.Bucket() != artifacts.Bucket {
		t.Fatalf("buckets %s, %s", from.Bucket(), to.Bucket())
	}
	a := put(t, from, "hello", program)
	kept, err := from.Copy(t.Context(), a, to, "rel-1/hello", "kept")
	if err != nil {
		t.Fatal(err)
	}
	if want := (artifacts.Artifact{Name: "hello", Object: "rel-1/hello", SHA256: a.SHA256, Size: a.Size}); kept != want {
		t.Fatalf("Copy = %+v; want %+v", kept, want)
	}
	obs, err := js.ObjectStore(t.Context(), keep)
	if err != nil {
		t.Fatal(err)
	}
	first, err := obs.GetInfo(t.Context(), "rel-1/hello")
	if err != nil {
		t.Fatal(err)
	}
	if err := from.Delete(t.Context(), a.Object); err != nil {
		t.Fatal(err)
	}
	if err := from.Delete(t.Context(), a.Object); err != nil {
		t.Errorf("deleting an object that is gone: %v", err)
	}
	ws := t.TempDir()
	if err := to.Fetch(t.Context(), kept, ws, "hello"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(ws, "hello")); !bytes.Equal(got, program) {
		t.Errorf("fetched %q", got)
	}
	// Again (a redelivered event): the kept object is found, not copied,
	// although the original is gone.
	again, err := from.Copy(t.Context(), a, to, "rel-1/hello", "kept")
	if err != nil || again != kept {
		t.Fatalf("second Copy = %+v, %v", again, err)
	}
	if info, err := obs.GetInfo(t.Context(), "rel-1/hello"); err != nil || info.NUID != first.NUID {
		t.Errorf("the second copy stored the object again: %v, %v", info, err)
	}
	if _, err := from.Copy(t.Context(), a, to, "rel-2/hello", ""); !errors.Is(err, artifacts.ErrNotFound) || !artifacts.Permanent(err) {
		t.Errorf("Copy of a missing object = %v; want ErrNotFound", err)
	}

	// Content that is not what the build recorded is refused, and nothing
	// is left under the name.
	b := put(t, from, "other", program)
	for name, change := range map[string]func(*artifacts.Artifact){
		"other sha256": func(a *artifacts.Artifact) { a.SHA256 = strings.Repeat("0", 64) },
		"shorter":      func(a *artifacts.Artifact) { a.Size-- },
		"longer":       func(a *artifacts.Artifact) { a.Size++ },
	} {
		bad := b
		change(&bad)
		_, err := from.Copy(t.Context(), bad, to, "rel-3/other", "")
		if !errors.Is(err, artifacts.ErrCorrupt) || !strings.Contains(err.Error(), `artifact "other"`) {
			t.Errorf("%s: Copy = %v; want ErrCorrupt naming the artifact", name, err)
		}
		if _, err := obs.GetInfo(t.Context(), "rel-3/other"); !errors.Is(err, jetstream.ErrObjectNotFound) {
			t.Errorf("%s: the refused copy was stored: %v", name, err)
		}
	}
	// Release's object name is checked as build's is.
	if _, err := from.Copy(t.Context(), b, to, strings.Repeat("o", 256), ""); !errors.Is(err, artifacts.ErrRefused) {
		t.Errorf("Copy to a name too long = %v; want ErrRefused", err)
	}
}

// Open reads an artifact's content, checked: what does not match the
// record fails in place of the end, never with io.EOF.
func TestOpenChecksWhatItReads(t *testing.T) {
	s := openStore(t)
	a := put(t, s, "hello", program)
	read := func(a artifacts.Artifact) ([]byte, error) {
		r, err := s.Open(t.Context(), a)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		return io.ReadAll(r)
	}
	if got, err := read(a); err != nil || !bytes.Equal(got, program) {
		t.Fatalf("Open: %d bytes, %v", len(got), err)
	}
	for name, change := range map[string]func(*artifacts.Artifact){
		"wrong sha256":   func(a *artifacts.Artifact) { a.SHA256 = strings.Repeat("0", 64) },
		"smaller size":   func(a *artifacts.Artifact) { a.Size-- },
		"missing object": func(a *artifacts.Artifact) { a.Object = "run-2/hello" },
	} {
		bad := a
		change(&bad)
		if _, err := read(bad); err == nil || !artifacts.Permanent(err) {
			t.Errorf("%s: %v; want a permanent error", name, err)
		}
	}
}

// A TarGzip artifact is unpacked into the directory Fetch names, replacing
// the files there; ArchiveBase says which directory that is.
func TestFetchUnpacksAnArchive(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	src := t.TempDir()
	for name, content := range map[string]string{"index.html": "page\n", "js/app.js": "js\n"} {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(src)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var buf bytes.Buffer
	w := tarball.NewWriter(&buf, tarball.Limits{Bytes: 1 << 20, Entries: 10})
	if err := w.Tree(t.Context(), root, ".", "", nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a := put(t, s, "web", buf.Bytes())
	a.Format = artifacts.TarGzip

	ws := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ws, "dist"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "dist/index.html"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Fetch(t.Context(), a, ws, artifacts.ArchiveBase("dist/**/*.html")); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"dist/index.html": "page\n", "dist/js/app.js": "js\n"} {
		if got, err := os.ReadFile(filepath.Join(ws, name)); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if entries, _ := os.ReadDir(ws); len(entries) != 1 {
		t.Errorf("the workspace holds %v; want dist alone (no temporary file left)", entries)
	}

	for p, want := range map[string]string{"dist": "dist", "dist/**/*.js": "dist", "*.txt": ".", "a/b/c?.log": "a/b", "./x/{a,b}/y": "x"} {
		if got := artifacts.ArchiveBase(p); got != want {
			t.Errorf("ArchiveBase(%q) = %q; want %q", p, got, want)
		}
	}
}
