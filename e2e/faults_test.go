package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/e2e/internal/e2ekit"
)

// subscriber is a webhook receiver that checks signatures.
type subscriber struct {
	t      *testing.T
	secret string
	srv    *httptest.Server
	mu     sync.Mutex
	types  []string
	bodies []string
	bad    int
}

func newSubscriber(t *testing.T, secret string) *subscriber {
	s := &subscriber{t: t, secret: secret}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		s.mu.Lock()
		defer s.mu.Unlock()
		if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Sluice-Signature-256"))) {
			s.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		s.types = append(s.types, r.Header.Get("ce-type"))
		s.bodies = append(s.bodies, string(body))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// waitFor waits until a delivered event of type typ contains every string.
func (s *subscriber) waitFor(typ string, contains ...string) {
	s.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		for i, ty := range s.types {
			if ty != typ {
				continue
			}
			ok := true
			for _, c := range contains {
				ok = ok && strings.Contains(s.bodies[i], c)
			}
			if ok {
				s.mu.Unlock()
				return
			}
		}
		s.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Fatalf("no %s delivery containing %v; got types %v (bad signatures: %d)", typ, contains, s.types, s.bad)
}

func (s *subscriber) count(typ string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ty := range s.types {
		if ty == typ {
			n++
		}
	}
	return n
}

const quickPipeline = `version: 1
build:
  steps:
    - name: compile
      run: echo compiling; mkdir -p out; echo binary > out/app
  artifacts:
    - name: app
      path: out/app
test:
  steps:
    - name: unit
      run: echo testing
`

// A failing step fails the run at its stage with the step's name, exit
// code and last lines; later stages never start; subscribers are told.
func TestFailingStepFailsRunAndTellsSubscribers(t *testing.T) {
	p, _ := startAllInOne(t, t.TempDir())
	sub := newSubscriber(t, "e2e-secret")
	mustCLI(t, p.env, "subscribe", "--url", sub.srv.URL, "--secret", "e2e-secret")

	repo := newGitRepo(t, map[string]string{".sluice.yaml": strings.Replace(quickPipeline,
		"run: echo compiling; mkdir -p out; echo binary > out/app",
		`run: "echo compiling; echo 'main.go:3: undefined: x' >&2; exit 3"`, 1)})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "broken")
	out, code := cli(t, p.env, "trigger", "broken", "--follow")
	if code != 1 {
		t.Fatalf("trigger --follow exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"compile", "exited with code 3", "undefined: x"} {
		if !strings.Contains(out, want) {
			t.Fatalf("follow output lacks %q:\n%s", want, out)
		}
	}
	runID := lastRunID(t, p, "broken")
	show := mustCLI(t, p.env, "show", runID)
	for _, want := range []string{"failed", `"compile"`, "code 3", "undefined: x", "test     skipped", "release  skipped"} {
		if !strings.Contains(show, want) {
			t.Fatalf("show lacks %q:\n%s", want, show)
		}
	}
	sub.waitFor("dev.cdevents.build.finished.0.3.0", "BUILD_STATUS_FAILED", runID)
	sub.waitFor("dev.cdevents.pipelinerun.finished.0.3.0", "RUN_STATUS_FAILED", runID)
	deliveries := mustCLI(t, p.env, "deliveries")
	if !strings.Contains(deliveries, "dev.cdevents.build.finished.0.3.0") || !strings.Contains(deliveries, "succeeded") {
		t.Fatalf("deliveries do not list the delivered events:\n%s", deliveries)
	}
	if n := sub.count("dev.cdevents.testsuiterun.started.0.3.0"); n != 0 {
		t.Fatalf("tests started %d times after a failed build", n)
	}
}

// An invalid pipeline file fails the run at source with file:line:col.
func TestInvalidPipelineFailsAtSource(t *testing.T) {
	p, _ := startAllInOne(t, t.TempDir())
	repo := newGitRepo(t, map[string]string{".sluice.yaml": "version: 1\nbuild:\n  steps:\n    - name: compile\n      rn: make\n"})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "typo")
	out, code := cli(t, p.env, "trigger", "typo", "--follow")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	show := mustCLI(t, p.env, "show", lastRunID(t, p, "typo"))
	if !strings.Contains(show, ".sluice.yaml:5:7:") || !strings.Contains(show, `"rn"`) {
		t.Fatalf("show does not give file:line:col for the bad key:\n%s", show)
	}
	if !strings.Contains(show, "build    skipped") {
		t.Fatalf("a later stage started:\n%s", show)
	}
}

// A release whose verification fails is rolled back to the last verified
// one; events, the run summary and a notification say so.
func TestFailedVerificationRollsBack(t *testing.T) {
	p, _ := startAllInOne(t, t.TempDir())
	sub := newSubscriber(t, "e2e-secret")
	mustCLI(t, p.env, "subscribe", "--url", sub.srv.URL, "--secret", "e2e-secret", "--events", "dev.cdevents.service.*")
	pipeline := quickPipeline + `release:
  branches: [main]
  environments:
    - name: staging
      deploy: echo "$SLUICE_RELEASE_VERSION" > "$SLUICE_STATE_DIR/current"
      verify:
        command: test ! -f BROKEN
        timeout: 2s
`
	repo := newGitRepo(t, map[string]string{".sluice.yaml": pipeline})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "svc")
	out := mustCLI(t, p.env, "trigger", "svc", "--follow")
	if !strings.Contains(out, "v0.1.0") {
		t.Fatalf("first release: %s", out)
	}
	repo.CommitFiles("feat: a change that breaks staging", map[string]string{"BROKEN": "yes\n"})
	out, code := cli(t, p.env, "trigger", "svc", "--follow")
	if code != 1 || !strings.Contains(out, "rolled back") {
		t.Fatalf("exit %d, want 1 with a rollback:\n%s", code, out)
	}
	show := mustCLI(t, p.env, "show", lastRunID(t, p, "svc"))
	if !strings.Contains(show, "v0.1.0") || !strings.Contains(show, "rolled back") {
		t.Fatalf("run summary does not tell the rollback:\n%s", show)
	}
	deps := mustCLI(t, p.env, "deployments", "svc")
	if !strings.Contains(deps, "v0.2.0") || !strings.Contains(deps, "failed") || !strings.Contains(deps, "yes") {
		t.Fatalf("deployments: %s", deps)
	}
	sub.waitFor("dev.cdevents.service.rolledback.0.3.0", "v0.1.0", "v0.2.0")
	rel := mustCLI(t, p.env, "releases", "svc")
	if !strings.Contains(rel, "bad") {
		t.Fatalf("release v0.2.0 not marked bad: %s", rel)
	}
}

// The platform killed with SIGKILL in the middle of a build, and started
// again, finishes the run; nothing is lost.
func TestKilledPlatformFinishesRunAfterRestart(t *testing.T) {
	dataDir := t.TempDir()
	p, pr := startAllInOne(t, dataDir)
	repo := newGitRepo(t, map[string]string{".sluice.yaml": strings.Replace(quickPipeline,
		"run: echo compiling;", "run: echo compiling; sleep 3;", 1)})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "slow")
	mustCLI(t, p.env, "trigger", "slow")
	runID := lastRunID(t, p, "slow")
	waitForStage(t, p, runID, "build", "running")
	pr.kill()
	port := strings.TrimPrefix(p.url, "http://127.0.0.1:")
	var portN int
	_, _ = fmt.Sscanf(port, "%d", &portN)
	p.restartAllInOne(t, portN)
	// The job's lease runs out (30s ack wait) and the restarted worker
	// takes it over.
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		show := mustCLI(t, p.env, "show", runID)
		if strings.Contains(show, "status      succeeded") {
			logs := mustCLI(t, p.env, "logs", runID)
			if !strings.Contains(logs, "took over") {
				t.Fatalf("logs do not say the build was taken over:\n%s", logs)
			}
			return
		}
		if strings.Contains(show, "status      failed") {
			t.Fatalf("run failed after the restart:\n%s", show)
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("run did not finish after the restart:\n%s", mustCLI(t, p.env, "show", runID))
}

func lastRunID(t *testing.T, p *platform, repo string) string {
	t.Helper()
	out := mustCLI(t, p.env, "runs", repo)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		t.Fatalf("no runs of %s:\n%s", repo, out)
	}
	return strings.Fields(lines[1])[0]
}

func waitForStage(t *testing.T, p *platform, runID, stage, status string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		show := mustCLI(t, p.env, "show", runID)
		for _, line := range strings.Split(show, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == stage && f[1] == status {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("stage %s never became %s", stage, status)
}

// SQLite serves one replica: a second build process pointed at the same
// database refuses to start and says to use PostgreSQL for replicas, and the
// first one keeps running.
func TestSecondProcessOnOneSQLiteDatabaseRefuses(t *testing.T) {
	dataDir := t.TempDir()
	natsPort := e2ekit.FreePort(t)
	startProc(t, "nats-server", nil, bin(t, "nats-server"), "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(natsPort), "-sd", filepath.Join(dataDir, "nats"))
	env := func(port int) []string {
		return []string{
			fmt.Sprintf("SLUICE_BUILD_ADDR=127.0.0.1:%d", port),
			fmt.Sprintf("SLUICE_BUILD_NATS_URL=nats://127.0.0.1:%d", natsPort),
			"SLUICE_BUILD_DATA_DIR=" + filepath.Join(dataDir, "build"),
		}
	}
	firstPort := e2ekit.FreePort(t)
	first := startProc(t, "sluice-build (first)", env(firstPort), bin(t, "sluice-build"))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", firstPort), 30*time.Second, first)

	second := startProc(t, "sluice-build (second)", env(e2ekit.FreePort(t)), bin(t, "sluice-build"))
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the second process is still running")
	}
	out := second.out.String()
	if second.cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("the second process exited 0:\n%s", out)
	}
	for _, want := range []string{"already open in process " + strconv.Itoa(first.cmd.Process.Pid), "PostgreSQL", "replica"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the second process's output lacks %q:\n%s", want, out)
		}
	}
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", firstPort), 5*time.Second, first)
}
