package allinone

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

func noEnv(string) (string, bool) { return "", false }

// parse parses args as the CLI does (its command takes Flags()), then
// completes the options as Run does.
func parse(args []string, lookup func(string) (string, bool)) (Options, string, error) {
	c := NewCommand("test", nil)
	c.Flags().SetOutput(io.Discard)
	if err := c.Flags().Parse(args); err != nil {
		return Options{}, "", err
	}
	if c.Flags().NArg() > 0 {
		return Options{}, "", fmt.Errorf("unexpected argument %q", c.Flags().Arg(0))
	}
	example, err := c.flags.Complete(lookup)
	return c.options, example, err
}

func TestFlags(t *testing.T) {
	t.Parallel()
	o, example, err := parse([]string{"--services", "source, build,source", "--addr", "127.0.0.1:9", "--example", "x"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Services, ",") != "source,build" || o.Process.Addr != "127.0.0.1:9" || example != "x" {
		t.Fatalf("got %+v %q", o, example)
	}
	if o.Source.PollInterval != DefaultPollInterval {
		t.Errorf("poll interval %s, want %s", o.Source.PollInterval, DefaultPollInterval)
	}
	for _, bad := range [][]string{{"--services", "source,deploy"}, {"--services", ","}, {"--log-level", "loud"}, {"extra"}, {"--build-workers", "many"}, {"--nats-password", "x"}} {
		if _, _, err := parse(bad, noEnv); err == nil {
			t.Errorf("parse(%v) accepted", bad)
		}
	}
}

// A service's settings reach it from `sluice up`'s prefixed flags and from
// the same variables its own binary reads; --poll-interval still works.
func TestFlagsSetEveryServicesSettings(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SLUICE_BUILD_WORKERS": "7", "SLUICE_NOTIFY_MAX_ATTEMPTS": "3", "SLUICE_ADDR": "127.0.0.1:7"}
	o, _, err := parse([]string{"--release-workers", "5", "--poll-interval", "1m", "--test-step-timeout", "2m", "--build-workers", "9"},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if o.Build.Workers != 9 || o.Release.Workers != 5 || o.Source.PollInterval != time.Minute || o.Test.DefaultStepTimeout != 2*time.Minute ||
		o.Notify.MaxAttempts != 3 || o.Process.Addr != "127.0.0.1:7" {
		t.Fatalf("options %+v", o)
	}
}

// Every service of `sluice up` allows loopback and local repositories
// (the demo's egress: `make run` and the tests of this package need both),
// unless its flag or variable says otherwise.
func TestDemoAllowEgress(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SLUICE_SOURCE_ALLOW_EGRESS": "local,10.0.0.0/8"}
	o, _, err := parse([]string{"--notify-allow-egress", "private"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"source": "local,10.0.0.0/8", "build": "loopback,local", "test": "loopback,local", "release": "loopback,local", "notify": "private",
	}
	for _, u := range o.units() {
		if got := strings.Join(u.settings.AllowEgress, ","); got != want[u.name] {
			t.Errorf("%s: allow-egress %q, want %q", u.name, got, want[u.name])
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
