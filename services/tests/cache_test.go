package tests_test

import (
	"strings"
	"testing"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// The test stage keeps its caches as build does: the second run restores
// what the first saved.
func TestTestStageCacheIsRestoredOnTheNextRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	pipeline := &sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Caches: []*sourcev1.CacheSpec{{Key: "tools-1", Paths: []string{"~/.cache/tools"}}},
		Steps: []*sourcev1.Step{{Name: "t", Run: `if [ -f ~/.cache/tools/v ]; then echo "cached $(cat ~/.cache/tools/v)"; ` +
			`else mkdir -p ~/.cache/tools && echo "$SLUICE_RUN_ID" > ~/.cache/tools/v && echo installed; fi`}},
	}}
	logs := func() (string, string) {
		t.Helper()
		runID := h.run(pipeline)
		h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
		if f := h.events.finished(t, runID); f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
			t.Fatalf("status = %s (%s), want PASSED", f.GetStatus(), f.GetFailureReason())
		}
		res, err := h.client.GetLogs(t.Context(), &testv1.GetLogsRequest{RunId: runID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, l := range res.GetLines() {
			b.WriteString(l.GetText() + "\n")
		}
		return runID, b.String()
	}
	first, log := logs()
	if !strings.Contains(log, "--- cache tools-1: not found") || !strings.Contains(log, "installed\n") || !strings.Contains(log, "--- cache tools-1: saved (") {
		t.Fatalf("first run's log:\n%s", log)
	}
	_, log = logs()
	if !strings.Contains(log, "--- cache tools-1: restored from branch main") || !strings.Contains(log, "cached "+first+"\n") {
		t.Errorf("second run's log:\n%s", log)
	}
}
