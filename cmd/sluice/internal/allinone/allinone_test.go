package allinone

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

func TestParseFlags(t *testing.T) {
	o, example, err := ParseFlags([]string{"--services", "source, build,source", "--addr", "127.0.0.1:9", "--example", "x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Services, ",") != "source,build" || o.Addr != "127.0.0.1:9" || example != "x" {
		t.Fatalf("got %+v %q", o, example)
	}
	for _, bad := range [][]string{{"--services", "source,deploy"}, {"--services", ","}, {"--log-level", "loud"}, {"extra"}} {
		if _, _, err := ParseFlags(bad, io.Discard); err == nil {
			t.Errorf("ParseFlags(%v) accepted", bad)
		}
	}
}

func TestPrepareExampleIsIdempotent(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "bin", "junk"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "hello")
	for range 2 {
		if err := PrepareExample(src, dst); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := git.PlainOpen(dst)
	if err != nil {
		t.Fatal(err)
	}
	head, err := repo.Head()
	if err != nil || head.Name().Short() != "main" {
		t.Fatalf("head %v, %v", head, err)
	}
	iter, _ := repo.Log(&git.LogOptions{From: head.Hash()})
	n := 0
	_ = iter.ForEach(func(*object.Commit) error { n++; return nil })
	if n != 1 {
		t.Fatalf("%d commits, want 1 (prepared twice)", n)
	}
	if _, err := os.Stat(filepath.Join(dst, "bin")); !os.IsNotExist(err) {
		t.Fatal("build output was copied into the example repository")
	}
}
