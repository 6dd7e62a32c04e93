package stepcache_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/stepcache"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.KnownLeaks()...) }

// provision starts a nats-server with every declaration applied.
func provision(t testing.TB) jetstream.JetStream {
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

func open(t *testing.T, js jetstream.JetStream, limits stepcache.Limits) *stepcache.Store {
	t.Helper()
	s, err := stepcache.Open(t.Context(), js, stepcache.BuildBucket, limits, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func dirs(t *testing.T) stepcache.Dirs {
	t.Helper()
	base := t.TempDir()
	return stepcache.Dirs{Workspace: filepath.Join(base, "ws"), Home: filepath.Join(base, "ws.home")}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestACacheSavedOnABranchIsRestoredThereAndFromTheDefaultBranch(t *testing.T) {
	t.Parallel()
	js := provision(t)
	s := open(t, js, stepcache.Limits{})
	ctx := t.Context()
	paths := []string{".cache/deps", "~/go/pkg/mod"}

	src := dirs(t)
	write(t, filepath.Join(src.Workspace, ".cache/deps/a/b.txt"), "deps\n")
	write(t, filepath.Join(src.Workspace, "main.go"), "package main\n") // not cached
	write(t, filepath.Join(src.Home, "go/pkg/mod/m@v1/go.mod"), "module m\n")
	if err := os.Chmod(filepath.Join(src.Home, "go/pkg/mod/m@v1/go.mod"), 0o444); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(src.Workspace, ".cache/deps/tool")
	write(t, tool, "#!/bin/sh\n")
	if err := os.Chmod(tool, 0o755); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "secret")
	write(t, outside, "secret\n")
	if err := os.Symlink(outside, filepath.Join(src.Workspace, ".cache/deps/link")); err != nil {
		t.Fatal(err)
	}

	main := stepcache.Scope{RepositoryID: "repo-1", Repository: "hello", Branch: "main", DefaultBranch: "main"}
	saved, err := s.Save(ctx, main, "deps-1", paths, src)
	if err != nil {
		t.Fatal(err)
	}
	if saved.Files != 3 || saved.Size <= 0 {
		t.Errorf("saved %+v; want 3 files (the link left out)", saved)
	}

	for _, tc := range []struct {
		scope    stepcache.Scope
		fallback bool
	}{
		{main, false},
		{stepcache.Scope{RepositoryID: "repo-1", Branch: "feature/x", DefaultBranch: "main"}, true},
	} {
		dst := dirs(t)
		r, err := s.Restore(ctx, tc.scope, "deps-1", paths, dst)
		if err != nil {
			t.Fatal(err)
		}
		if r.Object == "" || r.Fallback != tc.fallback || r.Files != 3 {
			t.Errorf("restore on %s: %+v; want 3 files, fallback %v", tc.scope.Branch, r, tc.fallback)
		}
		if got := read(t, filepath.Join(dst.Workspace, ".cache/deps/a/b.txt")); got != "deps\n" {
			t.Errorf("b.txt = %q", got)
		}
		if got := read(t, filepath.Join(dst.Home, "go/pkg/mod/m@v1/go.mod")); got != "module m\n" {
			t.Errorf("go.mod = %q", got)
		}
		if fi, err := os.Stat(filepath.Join(dst.Workspace, ".cache/deps/tool")); err != nil || fi.Mode().Perm()&0o100 == 0 {
			t.Errorf("tool: %v, %v; want an executable file", fi, err)
		}
		for _, absent := range []string{"main.go", ".cache/deps/link"} {
			if _, err := os.Lstat(filepath.Join(dst.Workspace, absent)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s was restored (%v)", absent, err)
			}
		}
	}

	// A branch named like a tag's ref is not the tag.
	if _, err := s.Save(ctx, stepcache.Scope{RepositoryID: "repo-1", Branch: "refs/tags/v2"}, "deps-1", paths, src); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Restore(ctx, stepcache.Scope{RepositoryID: "repo-1", Ref: "refs/tags/v2"}, "deps-1", paths, dirs(t)); err != nil || r.Object != "" {
		t.Errorf("the tag's run restored the branch's cache: %+v, %v", r, err)
	}
	// Nothing to keep is not kept.
	if saved, err := s.Save(ctx, main, "none", []string{"missing", "~/missing"}, src); err != nil || saved.Object != "" {
		t.Errorf("saving paths that do not exist: %+v, %v; want nothing saved", saved, err)
	}

	// Another key, another repository, or a branch with no fallback: a miss.
	for _, tc := range []struct {
		scope stepcache.Scope
		key   string
	}{
		{main, "deps-2"},
		{main, "none"},
		{stepcache.Scope{RepositoryID: "repo-2", Branch: "main", DefaultBranch: "main"}, "deps-1"},
		{stepcache.Scope{RepositoryID: "repo-1", Branch: "feature/x"}, "deps-1"},
	} {
		if r, err := s.Restore(ctx, tc.scope, tc.key, paths, dirs(t)); err != nil || r.Object != "" {
			t.Errorf("restore %s of %+v = %+v, %v; want a miss", tc.key, tc.scope, r, err)
		}
	}
}

// putArchive stores a hand-made archive where scope's cache of key is.
func putArchive(t *testing.T, js jetstream.JetStream, s *stepcache.Store, sc stepcache.Scope, key string, entries []*tar.Header, content map[string][]byte) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if c, ok := content[h.Name]; ok {
			if _, err := tw.Write(c); err != nil {
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
	// Save finds the object's name; replace what it stored.
	d := dirs(t)
	write(t, filepath.Join(d.Workspace, "x"), "x")
	saved, err := s.Save(t.Context(), sc, key, []string{"x"}, d)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(t.Context(), stepcache.BuildBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(t.Context(), jetstream.ObjectMeta{Name: saved.Object}, &buf); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreWritesOnlyWhatThePipelineCaches(t *testing.T) {
	t.Parallel()
	js := provision(t)
	s := open(t, js, stepcache.Limits{MaxEntrySize: 1 << 20, MaxSize: 1 << 30})
	sc := stepcache.Scope{RepositoryID: "repo-1", Branch: "main"}
	reg := func(name string, size int) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(size)}
	}
	putArchive(t, js, s, sc, "hostile", []*tar.Header{
		reg("ws/.cache/ok.txt", 3),
		reg("ws/../escape.txt", 3),
		reg("ws/.cache/../../escape2.txt", 3),
		reg("ws/main.go", 3), // not under a cached path
		reg("home/.profile", 3),
		{Name: "ws/.cache/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"},
		{Name: "ws/.cache/dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3},
		reg("/etc/evil", 3),
	}, map[string][]byte{
		"ws/.cache/ok.txt": []byte("ok\n"), "ws/../escape.txt": []byte("no\n"), "ws/.cache/../../escape2.txt": []byte("no\n"),
		"ws/main.go": []byte("no\n"), "home/.profile": []byte("no\n"), "/etc/evil": []byte("no\n"),
	})
	d := dirs(t)
	r, err := s.Restore(t.Context(), sc, "hostile", []string{".cache"}, d)
	if err != nil {
		t.Fatal(err)
	}
	if r.Files != 1 || read(t, filepath.Join(d.Workspace, ".cache/ok.txt")) != "ok\n" {
		t.Errorf("restored %+v; want ok.txt alone", r)
	}
	var found []string
	_ = filepath.WalkDir(filepath.Dir(d.Workspace), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			found = append(found, strings.TrimPrefix(p, filepath.Dir(d.Workspace)))
		}
		return nil
	})
	if len(found) != 1 {
		t.Errorf("files written: %v; want /ws/.cache/ok.txt alone", found)
	}

	// A file that is there already (the checkout's, an artifact) stays.
	d = dirs(t)
	write(t, filepath.Join(d.Workspace, ".cache/ok.txt"), "mine\n")
	if _, err := s.Restore(t.Context(), sc, "hostile", []string{".cache"}, d); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(d.Workspace, ".cache/ok.txt")); got != "mine\n" {
		t.Errorf("the restore replaced a file that was there: %q", got)
	}

	// A file that claims more than the limit stops the restore, and what
	// it wrote of the cache goes.
	putArchive(t, js, s, sc, "huge", []*tar.Header{reg("ws/.cache/first", 3), reg("ws/.cache/big", 2<<20)},
		map[string][]byte{"ws/.cache/first": []byte("ok\n"), "ws/.cache/big": make([]byte, 2<<20)})
	d = dirs(t)
	if _, err := s.Restore(t.Context(), sc, "huge", []string{".cache"}, d); err == nil {
		t.Error("an archive past the entry limit was restored")
	}
	if _, err := os.Lstat(filepath.Join(d.Workspace, ".cache")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a broken restore left .cache (%v)", err)
	}
	// So does content that is not an archive.
	obs, _ := js.ObjectStore(t.Context(), stepcache.BuildBucket)
	_, err = obs.PutBytes(t.Context(), r.Object, []byte("not gzip"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore(t.Context(), sc, "hostile", []string{".cache"}, dirs(t)); err == nil || !strings.Contains(err.Error(), "not a readable gzipped tar") {
		t.Errorf("restore of garbage: %v; want not a readable gzipped tar", err)
	}
}

func TestACacheLargerThanTheLimitIsNotSaved(t *testing.T) {
	t.Parallel()
	js := provision(t)
	s := open(t, js, stepcache.Limits{MaxEntrySize: 64 << 10, MaxSize: 1 << 30})
	d := dirs(t)
	big := make([]byte, 256<<10)
	_, _ = rand.Read(big)
	write(t, filepath.Join(d.Workspace, ".cache/big"), string(big))
	sc := stepcache.Scope{RepositoryID: "repo-1", Branch: "main"}
	if _, err := s.Save(t.Context(), sc, "big", []string{".cache"}, d); !errors.Is(err, stepcache.ErrTooLarge) {
		t.Fatalf("Save = %v; want ErrTooLarge", err)
	}
	if r, err := s.Restore(t.Context(), sc, "big", []string{".cache"}, dirs(t)); err != nil || r.Object != "" {
		t.Errorf("after a refused save, restore = %+v, %v; want a miss", r, err)
	}
}

func TestTheLeastRecentlyUsedCachesGoFirst(t *testing.T) {
	t.Parallel()
	js := provision(t)
	// Room for about two of the caches below.
	s := open(t, js, stepcache.Limits{MaxEntrySize: 300 << 10, MaxSize: 300 << 10})
	sc := stepcache.Scope{RepositoryID: "repo-1", Branch: "main"}
	save := func(key string) stepcache.Saved {
		d := dirs(t)
		content := make([]byte, 100<<10)
		_, _ = rand.Read(content) // does not compress
		write(t, filepath.Join(d.Workspace, ".cache/f"), string(content))
		saved, err := s.Save(t.Context(), sc, key, []string{".cache"}, d)
		if err != nil {
			t.Fatal(err)
		}
		return saved
	}
	hit := func(key string) bool {
		r, err := s.Restore(t.Context(), sc, key, []string{".cache"}, dirs(t))
		if err != nil {
			t.Fatal(err)
		}
		return r.Object != ""
	}
	save("one")
	save("two")
	time.Sleep(10 * time.Millisecond) // distinct use times
	if !hit("one") {
		t.Fatal("cache one is missing")
	}
	saved := save("three")
	if saved.Evicted != 1 {
		t.Errorf("saving three evicted %d; want 1", saved.Evicted)
	}
	if !hit("one") || hit("two") || !hit("three") {
		t.Errorf("after the eviction: one %v, two %v, three %v; want two (the least recently used) gone", hit("one"), hit("two"), hit("three"))
	}
}
