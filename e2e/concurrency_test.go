package e2e

import (
	"strings"
	"testing"
	"time"
)

// A newer commit's run on a branch whose pipeline says cancel_superseded
// cancels the older run while its step runs (within cancelWithin), waits
// until that run ended, and then runs to success.
func TestANewerCommitCancelsTheBranchsOlderRun(t *testing.T) {
	t.Parallel()
	p, _ := startAllInOne(t, t.TempDir())
	repo := newGitRepo(t, map[string]string{
		"slow": "the first commit's build waits\n",
		".sluice.yaml": `version: 1
concurrency:
  group: branch
  cancel_superseded: true
build:
  steps:
    - name: compile
      run: if [ -f slow ]; then echo waiting; sleep 300; fi; echo built
`})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "superseded")
	mustCLI(t, p.env, "trigger", "superseded")
	older := lastRunID(t, p, "superseded")
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(mustCLI(t, p.env, "logs", older), "[compile] waiting") {
		if time.Now().After(deadline) {
			t.Fatalf("the older run's step did not start:\n%s", mustCLI(t, p.env, "show", older))
		}
		time.Sleep(200 * time.Millisecond)
	}

	repo.Remove("slow")
	repo.Commit("the second commit builds at once")
	at := time.Now()
	mustCLI(t, p.env, "trigger", "superseded")
	newer := lastRunID(t, p, "superseded")
	if newer == older {
		t.Fatal("no newer run")
	}
	waitShow(t, p, older, "status      cancelled", cancelWithin)
	took := time.Since(at)
	t.Logf("FIGURE cancel-superseded: the older run was cancelled %s after the newer run was triggered", took.Round(time.Millisecond))
	show := waitShow(t, p, newer, "status      succeeded", time.Minute)
	if !strings.Contains(show, "group       branch main") {
		t.Errorf("the newer run's show:\n%s", show)
	}
	show = mustCLI(t, p.env, "show", older)
	if want := "cancelled by run " + newer + " (a newer run of branch main), in the build stage"; !strings.Contains(show, want) {
		t.Errorf("the older run's show lacks %q:\n%s", want, show)
	}
	if logs := mustCLI(t, p.env, "logs", newer); !strings.Contains(logs, "[compile] built") {
		t.Errorf("the newer run's log:\n%s", logs)
	}
}

// waitShow waits up to within for `sluice show runID` to hold want, and
// returns what it showed.
func waitShow(t *testing.T, p *platform, runID, want string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		show := mustCLI(t, p.env, "show", runID)
		if strings.Contains(show, want) {
			return show
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, run %s does not show %q:\n%s", within, runID, want, show)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
