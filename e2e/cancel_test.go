package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor/container/containertest"
)

// cancelWithin is how soon `sluice cancel` must have stopped a run.
const cancelWithin = 10 * time.Second

// cancelRun triggers a run of a pipeline whose build step (in image when
// set) says it waits and then sleeps, cancels it once the step runs with
// `sluice cancel --follow`, and checks that the run ended cancelled within
// cancelWithin, that nothing after the step ran, and that the subscriber
// was told. It returns the run's id.
func cancelRun(t *testing.T, p *platform, name, image string) string {
	t.Helper()
	sub := newSubscriber(t, "e2e-secret")
	mustCLI(t, p.env, "subscribe", "--url", sub.srv.URL, "--secret", "e2e-secret")
	in := ""
	if image != "" {
		in = "\n      image: " + image
	}
	repo := newGitRepo(t, map[string]string{".sluice.yaml": `version: 1
build:
  steps:
    - name: wait` + in + `
      run: echo waiting; sleep 300
    - name: after
      run: echo after the wait
test:
  steps:
    - name: unit
      run: echo testing
`})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", name)
	mustCLI(t, p.env, "trigger", name)
	runID := lastRunID(t, p, name)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(mustCLI(t, p.env, "logs", runID), "[wait] waiting") {
		if time.Now().After(deadline) {
			t.Fatalf("the wait step did not start:\n%s", mustCLI(t, p.env, "logs", runID))
		}
		time.Sleep(200 * time.Millisecond)
	}

	at := time.Now()
	out, code := cli(t, p.env, "cancel", runID, "--follow")
	took := time.Since(at)
	if code != 0 {
		t.Fatalf("cancel --follow exit %d:\n%s", code, out)
	}
	if took > cancelWithin {
		t.Errorf("the run ended %s after `sluice cancel`; want within %s", took, cancelWithin)
	}
	t.Logf("FIGURE cancel: `sluice cancel --follow` returned with the run cancelled after %s", took.Round(time.Millisecond))
	show := mustCLI(t, p.env, "show", runID)
	for _, want := range []string{"status      cancelled", "cancel      requested by", "build    cancelled", "test     skipped", "wait  cancelled", "after skipped"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
	if logs := mustCLI(t, p.env, "logs", runID); strings.Contains(logs, "after the wait") || !strings.Contains(logs, "--- build cancelled by") {
		t.Errorf("the run's log:\n%s", logs)
	}
	sub.waitFor("dev.cdevents.pipelinerun.finished.0.3.0", "RUN_STATUS_CANCELLED", runID)
	if out, code := cli(t, p.env, "cancel", runID); code == 0 || !strings.Contains(out, "already ended") {
		t.Errorf("cancelling an ended run: exit %d:\n%s", code, out)
	}
	return runID
}

// `sluice cancel` stops a run's step on the process executor within 10 s;
// the run ends cancelled and its subscribers are told.
func TestCancelARunOnTheAllInOne(t *testing.T) {
	t.Parallel()
	p, _ := startAllInOne(t, t.TempDir())
	cancelRun(t, p, "patient", "")
}

// `sluice cancel` stops a step in a container within 10 s, and its
// container and network are removed.
func TestCancelAContainerStepOnTheAllInOne(t *testing.T) {
	img := containertest.Busybox(t)
	p, _ := startAllInOne(t, t.TempDir(), containerEnv()...)
	runID := cancelRun(t, p, "boxed-patient", img)
	checkNothingLeft(t, runID)
}
