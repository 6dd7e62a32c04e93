package tests_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// cancel publishes RunCancelRequested for runID, as source does.
func (h *harness) cancel(t *testing.T, runID string) {
	t.Helper()
	bf := h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED)
	ev, err := events.New(&sourceeventsv1.RunCancelRequested{
		RunId: runID, Repository: bf.GetRepository(), Commit: bf.GetCommit(), RequestedBy: "token t1 (alice)",
	}, runID, runID)
	if err != nil {
		t.Fatal(err)
	}
	h.publishEvent(t, ev)
}

// A test run whose run is cancelled while a step runs stops the step and
// ends CANCELLED within 10 s, the steps after it never run; a run
// cancelled before its build ended runs no test at all.
func TestACancelledRunStopsItsTests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{
		{Name: "long", Run: "echo started; sleep 300"},
		{Name: "after", Run: "echo after", DependsOn: []string{"long"}},
	}}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	servicekittest.Eventually(t, "the long step to run", func() bool {
		res, _ := h.client.GetLogs(t.Context(), &testv1.GetLogsRequest{RunId: runID})
		for _, l := range res.GetLines() {
			if l.GetText() == "started" {
				return true
			}
		}
		return false
	})
	at := time.Now()
	h.cancel(t, runID)
	f := h.events.finished(t, runID)
	if took := time.Since(at); took > 10*time.Second {
		t.Errorf("the test run ended %s after the cancel; want within 10s", took)
	}
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_CANCELLED || f.GetFailureReason() != "cancelled by token t1 (alice)" {
		t.Errorf("test run %s (%q), want CANCELLED by alice", f.GetStatus(), f.GetFailureReason())
	}
	res, err := h.client.GetTestRun(t.Context(), &testv1.GetTestRunRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range res.GetTestRun().GetSteps() {
		got = append(got, st.GetName()+" "+strings.TrimPrefix(st.GetStatus().String(), "STEP_STATUS_"))
	}
	if strings.Join(got, ", ") != "long CANCELLED, after SKIPPED" || res.GetTestRun().GetSteps()[0].GetReason() != "cancelled by token t1 (alice)" {
		t.Errorf("steps: %v (%v)", got, res.GetTestRun().GetSteps())
	}

	early := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "never", Run: "echo ran"}}}})
	h.cancel(t, early)
	time.Sleep(500 * time.Millisecond) // the cancellation is recorded (the build would end much later)
	h.publish(h.buildFinished(early, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	if f := h.events.finished(t, early); f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_CANCELLED || f.GetCounts().GetPassed() != 0 {
		t.Errorf("a run cancelled before its tests: %s, %v", f.GetStatus(), f.GetCounts())
	}
}
