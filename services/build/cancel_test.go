package build_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/build"
)

// cancelWithin is how soon a cancelled run's build must have ended.
const cancelWithin = 10 * time.Second

// cancel publishes RunCancelRequested for req's run, as source does.
func (h *harness) cancel(t *testing.T, req *sourceeventsv1.RunRequested) {
	t.Helper()
	ev, err := events.New(&sourceeventsv1.RunCancelRequested{
		RunId: req.GetRunId(), Repository: req.GetRepository(), Commit: req.GetCommit(), RequestedBy: "token t1 (alice)",
	}, req.GetRunId(), req.GetRunId())
	if err != nil {
		t.Fatal(err)
	}
	h.publishEvent(t, ev, "")
}

// longStepRun is a run whose first step runs until it is stopped (it says
// so on SIGTERM) once it touched started, and whose second would run
// after it.
func longStepRun(t *testing.T, h *harness) (*sourceeventsv1.RunRequested, string) {
	started := h.file(t, "started")
	repo := gitRepo(t, map[string]string{"README.md": "# cancel\n"})
	return runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{
		{Name: "long", Run: "trap 'echo stopping; exit 143' TERM; touch " + started + "; sleep 300 & wait"},
		{Name: "after", Run: "echo after"},
	}}), started
}

// checkCancelled checks that the build of req ended CANCELLED by alice
// with its long step stopped and the next one never run.
func checkCancelled(t *testing.T, i *instance, req *sourceeventsv1.RunRequested, fin *buildeventsv1.BuildFinished) {
	t.Helper()
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_CANCELLED || fin.GetFailureReason() != "cancelled by token t1 (alice)" {
		t.Errorf("build ended %s (%q), want CANCELLED (cancelled by token t1 (alice))", fin.GetStatus(), fin.GetFailureReason())
	}
	b := i.build(t, req.GetRunId())
	if st := b.GetSteps(); len(st) != 2 || st[0].GetStatus() != buildv1.StepStatus_STEP_STATUS_CANCELLED ||
		st[0].GetReason() != "cancelled by token t1 (alice)" || st[1].GetStatus() != buildv1.StepStatus_STEP_STATUS_SKIPPED {
		t.Errorf("steps %v, want long CANCELLED (by alice), after SKIPPED", st)
	}
	lines := texts(i.logs(t, req.GetRunId()).GetLines())
	if find := strings.Join(lines, "\n"); !strings.Contains(find, "--- build cancelled by token t1 (alice)") || strings.Contains(find, "\nafter") {
		t.Errorf("log:\n%s", find)
	}
}

// A build whose run is cancelled while a step runs stops the step (SIGTERM:
// the step says it stops) and ends CANCELLED within 10 s, its next step
// never run; StepFinished says the step was cancelled.
func TestACancelledRunStopsItsBuild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	req, started := longStepRun(t, h)
	h.publish(t, req)
	waitForFile(t, started)

	at := time.Now()
	h.cancel(t, req)
	fin := h.finished(t, req.GetRunId())
	if took := time.Since(at); took > cancelWithin {
		t.Errorf("the build ended %s after the cancel; want within %s", took, cancelWithin)
	}
	checkCancelled(t, h.instance, req, fin)
	if lines := strings.Join(texts(h.logs(t, req.GetRunId()).GetLines()), "\n"); !strings.Contains(lines, "stopping") {
		t.Errorf("the step was not stopped with SIGTERM:\n%s", lines)
	}
	var stepFinished *buildeventsv1.StepFinished
	for _, ev := range h.rec.of(req.GetRunId()) {
		if p, ok := ev.Payload.(*buildeventsv1.StepFinished); ok && p.GetStep() == "long" {
			stepFinished = p
		}
	}
	if stepFinished.GetStatus() != buildv1.StepStatus_STEP_STATUS_CANCELLED || stepFinished.GetReason() != "cancelled by token t1 (alice)" {
		t.Errorf("StepFinished of long: %v", stepFinished)
	}
	h.settle(t)
}

// A replica that does not hold the build may be the one that records the
// cancellation (here, a book of the shared database, as such a replica's
// consumer would): the holder finds it at its next look and stops within
// 10 s all the same.
func TestACancelRecordedByAnotherReplicaStopsTheBuild(t *testing.T) {
	t.Parallel()
	dbURL := sqldbtest.URL(t)
	h := newHarness(t, build.Config{Settings: servicekit.Settings{DatabaseURL: dbURL}, WorkerID: "worker-1"})
	req, started := longStepRun(t, h)
	h.publish(t, req)
	waitForFile(t, started)

	other := runcancel.New(servicekittest.OpenDBAt(t, dbURL), 0, nil)
	at := time.Now()
	if err := other.Record(context.Background(), runcancel.Cancellation{RunID: req.GetRunId(), By: "token t1 (alice)"}); err != nil {
		t.Fatal(err)
	}
	fin := h.finished(t, req.GetRunId())
	if took := time.Since(at); took > cancelWithin {
		t.Errorf("the build ended %s after the cancel; want within %s", took, cancelWithin)
	}
	checkCancelled(t, h.instance, req, fin)
	h.settle(t)
}

// A run cancelled before a worker took it runs no step: its build ends
// CANCELLED at once.
func TestARunCancelledWhileQueuedRunsNoStep(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	req, started := longStepRun(t, h)
	h.cancel(t, req)
	servicekittest.Eventually(t, "the cancellation to be recorded", func() bool {
		_, ok, err := runcancel.New(h.instance.db, 0, nil).Lookup(t.Context(), req.GetRunId())
		return err == nil && ok
	})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_CANCELLED {
		t.Fatalf("build %s, want CANCELLED", fin.GetStatus())
	}
	b := h.build(t, req.GetRunId())
	for _, st := range b.GetSteps() {
		if st.GetStatus() != buildv1.StepStatus_STEP_STATUS_SKIPPED {
			t.Errorf("step %s %s, want SKIPPED", st.GetName(), st.GetStatus())
		}
	}
	if _, err := os.Stat(started); err == nil {
		t.Error("the step ran")
	}
	h.settle(t)
}

// waitForFile waits for a step to make path.
func waitForFile(t *testing.T, path string) {
	t.Helper()
	servicekittest.Eventually(t, path+" to be made", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
}
