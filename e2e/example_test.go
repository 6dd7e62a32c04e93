package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/client"
)

// examples/guestbook runs on `sluice up` with its steps in containers: a
// build and a test over two Go versions in the images `make
// example-images` builds, and a step that reaches the test stage's
// PostgreSQL service by its name. It leaves no container or network.
func TestContainerExampleOnTheAllInOne(t *testing.T) {
	t.Parallel()
	requireImages(t, "sluice-example-go:1.26", "sluice-example-go:1.27", "sluice-postgres:dev")
	files := map[string]string{}
	dir := filepath.Join("..", "examples", "guestbook")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	p, _ := startAllInOne(t, t.TempDir(), containerEnv()...)
	repo := newGitRepo(t, files)
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "guestbook")
	out, code := cli(t, p.env, "trigger", "guestbook", "--follow")
	runID := lastRunID(t, p, "guestbook")
	if code != 0 {
		t.Fatalf("trigger --follow exit %d:\n%s\n%s", code, out, mustCLI(t, p.env, "logs", runID))
	}
	logs := mustCLI(t, p.env, "logs", runID)
	for _, want := range []string{
		"[compile-1_26] go version go1.26", "[compile-1_27] go version go1.27",
		"[compile-1_27] welcome to the guestbook, sluice",
		"[unit-1_26] --- PASS: TestGreeting", "[unit-1_27] --- PASS: TestGreeting",
		"[schema] signed by sluice",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the run's log lacks %q:\n%s", want, logs)
		}
	}
	if list := mustCLI(t, p.env, "artifacts", runID); !strings.Contains(list, "guestbook") {
		t.Errorf("sluice artifacts:\n%s", list)
	}
	checkNothingLeft(t, runID)
}

// requireImages fails the test unless the engine has every image named.
func requireImages(t *testing.T, images ...string) {
	t.Helper()
	api, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.Close() }()
	for _, img := range images {
		if _, err := api.ImageInspect(t.Context(), img); err != nil {
			t.Fatalf("image %s: %v (make images builds it)", img, err)
		}
	}
}
