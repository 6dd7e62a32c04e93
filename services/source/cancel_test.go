package source_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

const subjectRunCancelRequested = "sluice.source.run.cancelrequested"

// CancelRun records who asked first and publishes RunCancelRequested each
// time it is asked (a stage that missed it gets it again); a viewer may not
// cancel, an unknown run is not found.
// The run ends cancelled when its stage says so (here, the build), with
// RunFinished; then cancelling it is refused.
func TestCancelRun(t *testing.T) {
	t.Parallel()
	h, f := newAppRun(t)
	ctx := t.Context()

	viewer := sourcev1connect.NewSourceServiceClient(h.proc.ClientWith(servicekittest.IssueToken(t, h.natsURL, authv1.Role_ROLE_VIEWER)), h.url)
	servicekittest.WaitKnown(t, func() error { _, err := viewer.ListRuns(ctx, &sourcev1.ListRunsRequest{}); return err })
	if _, err := viewer.CancelRun(ctx, &sourcev1.CancelRunRequest{RunId: f.run.Id}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a viewer cancels: %v", err)
	}
	if _, err := h.client.CancelRun(ctx, &sourcev1.CancelRunRequest{RunId: "no-such-run"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("cancel an unknown run: %v", err)
	}

	res, err := h.client.CancelRun(ctx, &sourcev1.CancelRunRequest{RunId: f.run.Id})
	if err != nil {
		t.Fatal(err)
	}
	run := res.GetRun()
	if run.GetStatus() != sourcev1.RunStatus_RUN_STATUS_QUEUED || run.GetCancelRequestTime() == nil || run.GetCancelRequestedBy() == "" {
		t.Fatalf("run after CancelRun: %s, requested at %v by %q", run.GetStatus(), run.GetCancelRequestTime(), run.GetCancelRequestedBy())
	}
	again, err := h.client.CancelRun(ctx, &sourcev1.CancelRunRequest{RunId: f.run.Id})
	if err != nil {
		t.Fatal(err)
	}
	if !again.GetRun().GetCancelRequestTime().AsTime().Equal(run.GetCancelRequestTime().AsTime()) {
		t.Errorf("asking again moved the request time: %v, then %v", run.GetCancelRequestTime(), again.GetRun().GetCancelRequestTime())
	}
	req := payload[*sourceeventsv1.RunCancelRequested](t, h.waitRunEvent(subjectRunCancelRequested, f.run.Id))
	if req.GetRequestedBy() != run.GetCancelRequestedBy() || req.GetCommit() != f.run.Commit || req.GetRepository().GetName() != "app" {
		t.Errorf("RunCancelRequested %v; want the run's, requested by %q", req, run.GetCancelRequestedBy())
	}

	// The build stopped: the run ends cancelled, its other stages skipped.
	f.buildStarted(time.Now())
	f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_CANCELLED,
		FailureReason: "cancelled by " + run.GetCancelRequestedBy()}, time.Now())
	ended := f.waitStatus(sourcev1.RunStatus_RUN_STATUS_CANCELLED)
	if want := "cancelled by " + run.GetCancelRequestedBy() + ", in the build stage"; ended.GetFailureReason() != want {
		t.Errorf("failure reason %q, want %q", ended.GetFailureReason(), want)
	}
	st := stages(ended)
	if st["build"].GetStatus() != sourcev1.StageStatus_STAGE_STATUS_CANCELLED || st["test"].GetStatus() != sourcev1.StageStatus_STAGE_STATUS_SKIPPED || st["release"].GetStatus() != sourcev1.StageStatus_STAGE_STATUS_SKIPPED {
		t.Errorf("stages after a cancelled build: %v", ended.GetStages())
	}
	if fin := f.finishedOnce(); fin.GetStatus() != sourcev1.RunStatus_RUN_STATUS_CANCELLED {
		t.Errorf("RunFinished %s", fin.GetStatus())
	}
	reqs := h.runEvents(subjectRunCancelRequested, f.run.Id)
	if len(reqs) != 2 || payload[*sourceeventsv1.RunCancelRequested](t, reqs[1]).GetRequestedBy() != run.GetCancelRequestedBy() {
		t.Errorf("%d RunCancelRequested events, want 2, both by the first asker", len(reqs))
	}
	if _, err := h.client.CancelRun(ctx, &sourcev1.CancelRunRequest{RunId: f.run.Id}); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("cancel an ended run: %v", err)
	}
}

// A test run or a release that says the run was cancelled ends it
// cancelled too.
func TestACancelledTestRunOrReleaseCancelsTheRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	now := time.Now()

	inTest := h.trigger("app", "")
	f := &folding{h: h, run: inTest, ref: repoRef(inTest, repo.Url)}
	f.buildSucceeded(now)
	f.testFinished(&testeventsv1.TestRunFinished{Status: testv1.TestRunStatus_TEST_RUN_STATUS_CANCELLED,
		FailureReason: "cancelled by token t1 (alice)", Counts: &testv1.Counts{Passed: 3}}, now.Add(time.Second))
	ended := f.waitStatus(sourcev1.RunStatus_RUN_STATUS_CANCELLED)
	if ended.GetFailureReason() != "cancelled by token t1 (alice), in the test stage" || stages(ended)["release"].GetStatus() != sourcev1.StageStatus_STAGE_STATUS_SKIPPED {
		t.Errorf("run %q, stages %v", ended.GetFailureReason(), ended.GetStages())
	}

	inRelease := h.trigger("app", "")
	f = &folding{h: h, run: inRelease, ref: repoRef(inRelease, repo.Url)}
	f.buildSucceeded(now)
	f.testPassed(now.Add(time.Second))
	f.releaseFinished(&releaseeventsv1.ReleaseFinished{Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_CANCELLED,
		Reason: "cancelled by token t1 (alice)"}, now.Add(2*time.Second))
	ended = f.waitStatus(sourcev1.RunStatus_RUN_STATUS_CANCELLED)
	if ended.GetFailureReason() != "cancelled by token t1 (alice), in the release stage" {
		t.Errorf("run %q", ended.GetFailureReason())
	}
}

// RerunRun makes a new run of an ended run's commit that names it and its
// first stage (on RunRequested too): the failed stage with failed, else
// the build. A run that has not ended, and failed for one that
// succeeded, are refused; a viewer may not rerun.
func TestRerunRun(t *testing.T) {
	t.Parallel()
	h, f := newAppRun(t)
	ctx := t.Context()
	if _, err := h.client.RerunRun(ctx, &sourcev1.RerunRunRequest{RunId: f.run.Id}); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("rerun a queued run: %v", err)
	}
	viewer := sourcev1connect.NewSourceServiceClient(h.proc.ClientWith(servicekittest.IssueToken(t, h.natsURL, authv1.Role_ROLE_VIEWER)), h.url)
	servicekittest.WaitKnown(t, func() error { _, err := viewer.ListRuns(ctx, &sourcev1.ListRunsRequest{}); return err })

	f.buildSucceeded(time.Now())
	f.testFinished(&testeventsv1.TestRunFinished{Status: testv1.TestRunStatus_TEST_RUN_STATUS_FAILED, Counts: &testv1.Counts{Failed: 1}}, time.Now())
	f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
	if _, err := viewer.RerunRun(ctx, &sourcev1.RerunRunRequest{RunId: f.run.Id}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a viewer reruns: %v", err)
	}
	for _, tc := range []struct {
		failed bool
		from   string
	}{{true, "test"}, {false, "build"}} {
		res, err := h.client.RerunRun(ctx, &sourcev1.RerunRunRequest{RunId: f.run.Id, Failed: tc.failed})
		if err != nil {
			t.Fatal(err)
		}
		run := res.GetRun()
		if run.GetId() == f.run.Id || run.GetCommit() != f.run.Commit || run.GetRerunOf() != f.run.Id || run.GetRerunFrom() != tc.from {
			t.Errorf("rerun (failed %v): run %s of %s, rerun of %q from %q; want a new run of %s from %s", tc.failed, run.GetId(), run.GetCommit(), run.GetRerunOf(), run.GetRerunFrom(), f.run.Commit, tc.from)
		}
		req := payload[*sourceeventsv1.RunRequested](t, h.waitRunEvent(subjectRunRequested, run.GetId()))
		if req.GetRerunOf() != f.run.Id || req.GetRerunFrom() != tc.from || req.GetPipeline() == nil {
			t.Errorf("RunRequested of the rerun: rerun of %q from %q", req.GetRerunOf(), req.GetRerunFrom())
		}
	}

	ok := &folding{h: h, run: h.trigger("app", ""), ref: f.ref}
	ok.buildSucceeded(time.Now())
	ok.testPassed(time.Now())
	ok.releaseFinished(&releaseeventsv1.ReleaseFinished{Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED}, time.Now())
	ok.waitStatus(sourcev1.RunStatus_RUN_STATUS_SUCCEEDED)
	if _, err := h.client.RerunRun(ctx, &sourcev1.RerunRunRequest{RunId: ok.run.Id, Failed: true}); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("rerun --failed of a run that succeeded: %v", err)
	}
}
