package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
	"github.com/sluicehq/sluice/platform/gittest"
)

// The bundled example goes from a commit to a verified deploy in staging,
// in the all-in-one shape, driven only through the CLI. This is scenario 1
// of the container tests (e2e/containers) in the `sluice up` shape, so both
// shapes stay honest.
func TestAllInOneRunsExampleToStaging(t *testing.T) {
	p, _ := startAllInOne(t, t.TempDir())
	repo, port := helloRepo(t)
	runExample(t, p, repo, port)
	printTally(t, p, "hello", 2)
}

// Five service processes and a separate nats-server behave the same, with
// TLS everywhere (startFiveProcesses).
func TestFiveProcessesRunExampleToStaging(t *testing.T) {
	p := startFiveProcesses(t, t.TempDir())
	// The healthcheck subcommand, configured as its service is, asks it
	// over https.
	for _, pr := range p.procs[1:] {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin(t, pr.name), "healthcheck")
		cmd.Env = append(os.Environ(), pr.env...)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "https://127.0.0.1:") || !strings.Contains(string(out), "ready") {
			t.Fatalf("%s healthcheck: %v\n%s", pr.name, err, out)
		}
	}
	repo, port := helloRepo(t)
	runExample(t, p, repo, port)
	assertNothingRefused(t, p)
	printTally(t, p, "hello", 2)
}

// printTally counts the repository's runs through the CLI (started,
// succeeded, failed, still not finished = lost, and runs deployed more than
// once to an environment) and logs the line every end-to-end scenario ends
// with; it fails unless all want runs succeeded exactly once.
func printTally(t *testing.T, p *platform, repo string, want int) {
	t.Helper()
	var runs struct {
		Runs []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, p.env, "runs", repo, "--output", "json")), &runs); err != nil {
		t.Fatal(err)
	}
	var deps struct {
		Deployments []struct {
			RunID       string `json:"runId"`
			Environment string `json:"environment"`
			Rollback    bool   `json:"rollback"`
		} `json:"deployments"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, p.env, "deployments", repo, "--output", "json")), &deps); err != nil {
		t.Fatal(err)
	}
	perRun := map[string]int{}
	for _, d := range deps.Deployments {
		if !d.Rollback {
			perRun[d.RunID+"/"+d.Environment]++
		}
	}
	twice := map[string]bool{}
	for key, n := range perRun {
		if n > 1 {
			twice[strings.Split(key, "/")[0]] = true
		}
	}
	succeeded, failed, lost := 0, 0, 0
	for _, r := range runs.Runs {
		switch r.Status {
		case "RUN_STATUS_SUCCEEDED":
			succeeded++
		case "RUN_STATUS_FAILED", "RUN_STATUS_CANCELLED":
			failed++
		default:
			lost++
		}
	}
	t.Logf("TALLY %s: runs started %d / succeeded %d / failed %d / lost %d / executed twice %d",
		t.Name(), len(runs.Runs), succeeded, failed, lost, len(twice))
	if len(runs.Runs) != want || succeeded != want || len(twice) != 0 {
		t.Fatalf("want %d runs, all succeeded once", want)
	}
}

func runExample(t *testing.T, p *platform, repo *gittest.Repo, port int) {
	t.Helper()
	out := mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "hello")
	if !strings.Contains(out, "registered hello") {
		t.Fatalf("repo add said: %s", out)
	}
	// Registering again is harmless.
	out = mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "hello")
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
	repo.CommitFiles("feat: say hi", map[string]string{"NOTES.md": "hi\n"})
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
	// A bound on "it gets there", not a speed test: a run of the example
	// takes ~15 s idle, and several times that on a loaded 2-core machine.
	deadline := time.Now().Add(2 * time.Minute)
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
// data directory it registers nothing twice and runs again, and that run
// deploys nothing: staging runs its commit already.
func TestUpWithExampleTwice(t *testing.T) {
	dataDir := t.TempDir()
	t.Cleanup(func() { killDeployed(dataDir) })
	example := filepath.Join(t.TempDir(), "hello")
	port := e2ekit.FreePort(t)
	for name, content := range e2ekit.ExampleFiles(t) {
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
	for i, want := range [][]string{
		{"registered example repository hello", "release  succeeded"},
		{"example repository hello already registered", "release  skipped", "staging already runs v0.1.0"},
	} {
		addr := fmt.Sprintf("127.0.0.1:%d", e2ekit.FreePort(t))
		env := append([]string{"XDG_CONFIG_HOME=" + filepath.Join(dataDir, "config")}, stepSandboxEnv(t)...)
		up := startProc(t, fmt.Sprintf("sluice up #%d", i+1), env, bin(t, "sluice"), "up", "--data-dir", dataDir, "--addr", addr, "--example", example, "--poll-interval", "0")
		waitOutput(t, up, "serving; Ctrl-C stops")
		out := up.out.String()
		// The first start makes the admin token and shows it once.
		if shown := strings.Contains(out, "  admin    sluice_"); shown != (i == 0) {
			t.Fatalf("sluice up #%d: admin token shown = %v, want %v:\n%s", i+1, shown, i == 0, out)
		}
		for _, w := range append(want, "build    succeeded", "test     succeeded", "released v0.1.0") {
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
