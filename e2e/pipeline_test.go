package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The bundled example goes from a commit to a verified deploy in staging,
// in the all-in-one shape, driven only through the CLI.
func TestAllInOneRunsExampleToStaging(t *testing.T) {
	p, _ := startAllInOne(t, t.TempDir())
	repo, port := helloRepo(t)
	runExample(t, p, repo, port)
}

// Five service processes and a separate nats-server behave the same.
func TestFiveProcessesRunExampleToStaging(t *testing.T) {
	p := startFiveProcesses(t, t.TempDir())
	repo, port := helloRepo(t)
	runExample(t, p, repo, port)
	assertNothingRefused(t, p)
}

func runExample(t *testing.T, p *platform, repo *gitRepo, port int) {
	t.Helper()
	out := mustCLI(t, p.env, "repo", "add", repo.dir, "--name", "hello")
	if !strings.Contains(out, "registered hello") {
		t.Fatalf("repo add said: %s", out)
	}
	// Registering again is harmless.
	out = mustCLI(t, p.env, "repo", "add", repo.dir, "--name", "hello")
	if !strings.Contains(out, "already registered") {
		t.Fatalf("second repo add said: %s", out)
	}
	// Tail the live build events while the run goes.
	events := startProc(t, "sluice events", p.env, bin(t, "sluice"), "events", "--filter", "sluice.build.>")
	time.Sleep(500 * time.Millisecond) // let the tail subscribe before the run starts
	out = mustCLI(t, p.env, "trigger", "hello", "--follow")
	for _, want := range []string{"build", "test", "release", "succeeded", "v0.1.0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("trigger --follow output lacks %q:\n%s", want, out)
		}
	}
	// The release is deployed and answers.
	assertServes(t, port, "v0.1.0")
	out = mustCLI(t, p.env, "releases", "hello")
	if !strings.Contains(out, "v0.1.0") {
		t.Fatalf("releases: %s", out)
	}
	out = mustCLI(t, p.env, "deployments", "hello")
	if !strings.Contains(out, "staging") || !strings.Contains(out, "verified") {
		t.Fatalf("deployments: %s", out)
	}
	// JSON output is parseable and has the run.
	out = mustCLI(t, p.env, "runs", "hello", "--output", "json")
	var runs struct {
		Runs []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &runs); err != nil || len(runs.Runs) != 1 || runs.Runs[0].Status != "RUN_STATUS_SUCCEEDED" {
		t.Fatalf("runs --output json: %v\n%s", err, out)
	}
	out = mustCLI(t, p.env, "logs", runs.Runs[0].ID)
	if !strings.Contains(out, "compile") || !strings.Contains(out, "unit") {
		t.Fatalf("logs lack the build and test steps:\n%s", out)
	}
	out = mustCLI(t, p.env, "show", runs.Runs[0].ID)
	if !strings.Contains(out, "succeeded") || !strings.Contains(out, "v0.1.0") {
		t.Fatalf("show: %s", out)
	}
	waitOutput(t, events, "sluice.build.build.finished")
	if strings.Contains(events.out.String(), "sluice.source.") {
		t.Fatalf("events --filter sluice.build.> printed other events:\n%s", events.out.String())
	}

	// A feature commit releases v0.2.0; a manual rollback brings v0.1.0 back.
	repo.commit("feat: say hi", map[string]string{"NOTES.md": "hi\n"})
	out = mustCLI(t, p.env, "trigger", "hello", "--follow")
	if !strings.Contains(out, "v0.2.0") {
		t.Fatalf("second run: %s", out)
	}
	assertServes(t, port, "v0.2.0")
	out = mustCLI(t, p.env, "rollback", "hello", "--env", "staging")
	if !strings.Contains(out, "rolled staging back to v0.1.0: verified") {
		t.Fatalf("rollback: %s", out)
	}
	assertServes(t, port, "v0.1.0")
}

func assertServes(t *testing.T, port int, version string) {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)) //nolint:noctx // test
	if err != nil {
		t.Fatalf("deployed service does not answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), version) {
		t.Fatalf("deployed service says %q, want %s", body, version)
	}
}

// waitOutput waits until a process has printed want.
func waitOutput(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(p.out.String(), want) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never printed %q:\n%s", p.name, want, p.out.String())
}

// `sluice up --example DIR` (what `make run` does) registers the example,
// runs it to a verified deploy and keeps serving; started again on the same
// data directory it registers nothing twice and runs again.
func TestUpWithExampleTwice(t *testing.T) {
	dataDir := t.TempDir()
	t.Cleanup(func() { killDeployed(dataDir) })
	example := filepath.Join(t.TempDir(), "hello")
	port := freePort(t)
	for name, content := range exampleFiles(t) {
		if name == ".sluice.yaml" {
			content = strings.ReplaceAll(content, "127.0.0.1:18180", fmt.Sprintf("127.0.0.1:%d", port))
		}
		p := filepath.Join(example, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []string{"registered example repository hello", "example repository hello already registered"} {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		up := startProc(t, fmt.Sprintf("sluice up #%d", i+1), nil, bin(t, "sluice"), "up", "--data-dir", dataDir, "--addr", addr, "--example", example, "--poll-interval", "0")
		waitOutput(t, up, "serving; Ctrl-C stops")
		out := up.out.String()
		for _, w := range []string{want, "build    succeeded", "test     succeeded", "release  succeeded", "released v0.1.0"} {
			if !strings.Contains(out, w) {
				t.Fatalf("sluice up #%d output lacks %q:\n%s", i+1, w, out)
			}
		}
		assertServes(t, port, "v0.1.0")
		up.stop()
		if !strings.Contains(up.out.String(), "stopping...") || strings.Contains(up.out.String(), "component failed") {
			t.Fatalf("sluice up #%d did not stop cleanly:\n%s", i+1, up.out.String())
		}
	}
}
