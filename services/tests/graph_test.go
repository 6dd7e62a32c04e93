package tests_test

import (
	"strconv"
	"strings"
	"testing"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// The test stage's steps run as their graph says, as the build's do: two
// at once (each waits for the other's file), one tried again, one allowed
// to fail, one skipped by its condition (the run's branch), and the run
// passes.
func TestTestStepsRunAsTheirGraphSays(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	meet := func(mine, other string) string {
		return "touch " + mine + "; i=0; while [ ! -e " + other + " ]; do i=$((i+1)); [ $i -gt 200 ] && exit 3; sleep 0.05; done"
	}
	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{
		{Name: "unit-a", MatrixOf: "unit", Matrix: map[string]string{"shard": "a"}, Run: meet("a.here", "b.here"), DependsOn: []string{"prepare"}},
		{Name: "unit-b", MatrixOf: "unit", Matrix: map[string]string{"shard": "b"}, Run: meet("b.here", "a.here"), DependsOn: []string{"prepare"}},
		{Name: "prepare", Run: "true"},
		{Name: "flaky", Run: "if [ -e tried ]; then exit 0; fi; touch tried; exit 1", Retry: 1},
		{Name: "lint", Run: "exit 5", AllowFailure: true},
		{Name: "release-only", Run: "exit 9", When: `branch startsWith "release/"`},
		{Name: "summary", Run: "true", DependsOn: []string{"unit", "flaky", "lint"}, When: `status("unit") == "succeeded"`},
	}}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
		t.Fatalf("status = %s (%s), want PASSED", f.GetStatus(), f.GetFailureReason())
	}
	res, err := h.client.GetTestRun(t.Context(), &testv1.GetTestRunRequest{Id: f.GetTestRunId()})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.GetTestRun()
	if got, want := steps(tr), "unit-a:SUCCEEDED:0 unit-b:SUCCEEDED:0 prepare:SUCCEEDED:0 flaky:SUCCEEDED:0 lint:FAILED:5 release-only:SKIPPED:0 summary:SUCCEEDED:0"; got != want {
		t.Errorf("steps %s\nwant  %s", got, want)
	}
	var tries []string
	for _, st := range tr.GetSteps() {
		tries = append(tries, strconv.Itoa(int(st.GetTries())))
	}
	if got := strings.Join(tries, ""); got != "1112101" {
		t.Errorf("tries %s, want 1112101", got)
	}
	if r := tr.GetSteps()[5].GetReason(); r != `when branch startsWith "release/" is false` {
		t.Errorf("release-only skipped because %q", r)
	}
}

// A failing step fails the test run (its dependants skipped), unless it
// is allowed to fail.
func TestAFailingTestStepSkipsItsDependants(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{MaxParallel: 1, Steps: []*sourcev1.Step{
		{Name: "a", Run: "exit 3"},
		{Name: "b", Run: "true", DependsOn: []string{"a"}},
		{Name: "c", Run: "true"},
	}}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_FAILED || f.GetFailedStep() != "a" || f.GetExitCode() != 3 {
		t.Fatalf("status = %s (%s) step %q, want FAILED by a", f.GetStatus(), f.GetFailureReason(), f.GetFailedStep())
	}
	res, err := h.client.GetTestRun(t.Context(), &testv1.GetTestRunRequest{Id: f.GetTestRunId()})
	if err != nil {
		t.Fatal(err)
	}
	// c depends on nothing: it was ready to run from the start, so it runs
	// though a failed before a slot freed for it (one step at a time).
	if got, want := steps(res.GetTestRun()), "a:FAILED:3 b:SKIPPED:0 c:SUCCEEDED:0"; got != want {
		t.Errorf("steps %s, want %s", got, want)
	}
}
