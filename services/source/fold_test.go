package source_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

// stages is a run's stages by name.
func stages(run *sourcev1.Run) map[string]*sourcev1.Stage {
	out := map[string]*sourcev1.Stage{}
	for _, s := range run.Stages {
		out[s.Name] = s
	}
	return out
}

func at(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// folding publishes other services' events for one run.
type folding struct {
	h   *harness
	run *sourcev1.Run
	ref *sourceeventsv1.RepositoryRef
}

func (f *folding) buildStarted(when time.Time) {
	f.h.publish(&buildeventsv1.BuildStarted{RunId: f.run.Id, BuildId: "b-" + f.run.Id, Repository: f.ref, Commit: f.run.Commit}, "b-"+f.run.Id, f.run.Id, when)
}

func (f *folding) buildFinished(p *buildeventsv1.BuildFinished, when time.Time) {
	p.RunId, p.BuildId, p.Repository, p.Commit = f.run.Id, "b-"+f.run.Id, f.ref, f.run.Commit
	f.h.publish(p, p.BuildId, f.run.Id, when)
}

func (f *folding) buildSucceeded(when time.Time) {
	f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED}, when)
}

func (f *folding) testFinished(p *testeventsv1.TestRunFinished, when time.Time) {
	p.RunId, p.TestRunId, p.Repository, p.Commit = f.run.Id, "t-"+f.run.Id, f.ref, f.run.Commit
	f.h.publish(p, p.TestRunId, f.run.Id, when)
}

func (f *folding) testPassed(when time.Time) {
	f.testFinished(&testeventsv1.TestRunFinished{Status: testv1.TestRunStatus_TEST_RUN_STATUS_PASSED, Counts: &testv1.Counts{Passed: 3}}, when)
}

func (f *folding) releaseFinished(p *releaseeventsv1.ReleaseFinished, when time.Time) {
	p.RunId, p.Repository = f.run.Id, f.ref
	f.h.publish(p, "r-"+f.run.Id, f.run.Id, when)
}

func (f *folding) waitStatus(status sourcev1.RunStatus) *sourcev1.Run {
	f.h.t.Helper()
	var run *sourcev1.Run
	servicekittest.Eventually(f.h.t, "run "+f.run.Id+" is "+status.String(), func() bool {
		run = f.h.getRun(f.run.Id)
		return run.Status == status
	})
	// The streams are consumed independently: let the rest be folded too.
	f.h.waitConsumed()
	return f.h.getRun(f.run.Id)
}

// finishedOnce waits until every published event is folded and the outbox
// has published what the folds enqueued, then checks that the run's
// RunFinished went out exactly once, and returns it.
func (f *folding) finishedOnce() *sourceeventsv1.RunFinished {
	f.h.t.Helper()
	f.h.waitConsumed()
	f.h.outboxBarrier(f.run.Repository)
	got := f.h.runEvents(subjectRunFinished, f.run.Id)
	if len(got) != 1 {
		f.h.t.Fatalf("run %s: %d RunFinished events, want 1", f.run.Id, len(got))
	}
	return payload[*sourceeventsv1.RunFinished](f.h.t, got[0])
}

// TestFold publishes the build, test and release services' events, out of
// order and twice, and checks the summary GetRun shows and that
// RunFinished is published once per run.
func TestFold(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	newFolding := func() *folding {
		run := h.trigger("app", "")
		return &folding{h: h, run: run, ref: repoRef(run, repo.Url)}
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

	t.Run("success out of order with redeliveries", func(t *testing.T) {
		f := newFolding()
		f.testFinished(&testeventsv1.TestRunFinished{Status: testv1.TestRunStatus_TEST_RUN_STATUS_PASSED,
			Counts: &testv1.Counts{Passed: 12, Failed: 0, Skipped: 1}}, t0.Add(3*time.Minute))
		started := h.publish(&buildeventsv1.BuildStarted{RunId: f.run.Id, BuildId: "b1", Repository: f.ref}, "b1", f.run.Id, t0)
		f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED,
			Artifacts: []*buildv1.Artifact{{Name: "hello", Object: f.run.Id + "/hello", Sha256: strings.Repeat("0", 64), Size: 1}}}, t0.Add(2*time.Minute))
		h.publishEvent(started, true)
		h.publish(&releaseeventsv1.ReleasePublished{RunId: f.run.Id, Repository: f.ref,
			Release: &releasev1.Release{Version: "v0.2.0"}}, "rel1", f.run.Id, t0.Add(4*time.Minute))
		h.publish(&releaseeventsv1.ServiceDeployed{RunId: f.run.Id, Repository: f.ref,
			Deployment: &releasev1.Deployment{Environment: "staging", Version: "v0.2.0"}}, "dep1", f.run.Id, t0.Add(4*time.Minute))
		fin := h.publish(&releaseeventsv1.ReleaseFinished{RunId: f.run.Id, Repository: f.ref,
			Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED, Version: "v0.2.0"}, "rel1", f.run.Id, t0.Add(5*time.Minute))
		h.publishEvent(fin, true)
		// A late testrun.started fills the start time in; the stage stays
		// succeeded.
		h.publish(&testeventsv1.TestRunStarted{RunId: f.run.Id, TestRunId: "t1", Repository: f.ref}, "t1", f.run.Id, t0.Add(150*time.Second))

		var run *sourcev1.Run
		servicekittest.Eventually(t, "the run succeeded and the late start is folded", func() bool {
			run = h.getRun(f.run.Id)
			return run.Status == sourcev1.RunStatus_RUN_STATUS_SUCCEEDED && stages(run)["test"].StartTime != nil
		})
		// The three streams are consumed independently: the build events
		// may still be on their way.
		h.waitConsumed()
		run = h.getRun(f.run.Id)
		st := stages(run)
		check := func(name string, status sourcev1.StageStatus, start, end time.Time, detail string) {
			t.Helper()
			s := st[name]
			if s.Status != status || !at(s.StartTime).Equal(start) || !at(s.EndTime).Equal(end) || s.Detail != detail {
				t.Errorf("stage %s = %v; want %v from %v to %v, detail %q", name, s, status, start, end, detail)
			}
		}
		check("build", sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED, t0, t0.Add(2*time.Minute), "1 artifact: hello")
		check("test", sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED, t0.Add(150*time.Second), t0.Add(3*time.Minute), "12 passed, 0 failed, 1 skipped")
		check("release", sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED, t0.Add(4*time.Minute), t0.Add(5*time.Minute), "deployed v0.2.0 to staging")
		if run.ReleaseVersion != "v0.2.0" || !at(run.EndTime).Equal(t0.Add(5*time.Minute)) || run.FailureReason != "" {
			t.Errorf("run = %v", run)
		}
		p := f.finishedOnce()
		if p.Status != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED || p.ReleaseVersion != "v0.2.0" || p.Commit != f.run.Commit {
			t.Errorf("RunFinished = %v", p)
		}
	})

	t.Run("build failure", func(t *testing.T) {
		f := newFolding()
		f.buildStarted(t0)
		f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_FAILED,
			FailedStep: "compile", ExitCode: 2, LastLogLines: []string{"./main.go:3:2: undefined: x"}}, t0.Add(time.Minute))
		// A step event that arrives after the end changes nothing.
		h.publish(&buildeventsv1.StepFinished{RunId: f.run.Id, BuildId: "b-" + f.run.Id, Step: "compile",
			Status: buildv1.StepStatus_STEP_STATUS_FAILED, ExitCode: 2}, "b-"+f.run.Id, f.run.Id, t0.Add(time.Minute))
		run := f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
		want := `build failed: step "compile" exited with code 2`
		if run.FailureReason != want {
			t.Errorf("failure reason %q, want %q", run.FailureReason, want)
		}
		b := stages(run)["build"]
		if b.Status != sourcev1.StageStatus_STAGE_STATUS_FAILED || b.FailedStep != "compile" || b.ExitCode != 2 ||
			len(b.LastLogLines) != 1 || b.LastLogLines[0] != "./main.go:3:2: undefined: x" {
			t.Errorf("build stage = %v", b)
		}
		for _, name := range []string{"test", "release"} {
			if s := stages(run)[name]; s.Status != sourcev1.StageStatus_STAGE_STATUS_SKIPPED {
				t.Errorf("%s stage = %v, want skipped", name, s)
			}
		}
		p := f.finishedOnce()
		if p.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || p.FailureReason != want {
			t.Errorf("RunFinished = %v", p)
		}
		if got := h.getRun(f.run.Id); stages(got)["build"].Status != sourcev1.StageStatus_STAGE_STATUS_FAILED {
			t.Errorf("the late step event moved the build stage to %v", stages(got)["build"].Status)
		}
	})

	t.Run("build timeout uses the event's reason", func(t *testing.T) {
		f := newFolding()
		f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_FAILED,
			FailedStep: "x", ExitCode: -1, FailureReason: `step "x" timed out after 5m0s`}, t0)
		run := f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
		if want := `build failed: step "x" timed out after 5m0s`; run.FailureReason != want {
			t.Errorf("failure reason %q, want %q", run.FailureReason, want)
		}
		f.finishedOnce()
	})

	t.Run("test failure", func(t *testing.T) {
		f := newFolding()
		f.buildSucceeded(t0)
		h.publish(&testeventsv1.TestRunStarted{RunId: f.run.Id, TestRunId: "t-" + f.run.Id, Repository: f.ref}, "t-"+f.run.Id, f.run.Id, t0.Add(time.Minute))
		f.testFinished(&testeventsv1.TestRunFinished{Status: testv1.TestRunStatus_TEST_RUN_STATUS_FAILED,
			Counts: &testv1.Counts{Passed: 10, Failed: 2}, FailedStep: "unit", ExitCode: 1,
			FailedCases: []string{"TestA", "TestB"}}, t0.Add(2*time.Minute))
		run := f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
		want := `test failed: step "unit" exited with code 1; 10 passed, 2 failed, 0 skipped; failing: TestA, TestB`
		if run.FailureReason != want {
			t.Errorf("failure reason %q, want %q", run.FailureReason, want)
		}
		st := stages(run)
		if st["build"].Status != sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED || st["test"].Status != sourcev1.StageStatus_STAGE_STATUS_FAILED ||
			st["test"].Detail != "10 passed, 2 failed, 0 skipped" || st["release"].Status != sourcev1.StageStatus_STAGE_STATUS_SKIPPED {
			t.Errorf("stages = %v", run.Stages)
		}
		f.finishedOnce()
	})

	t.Run("release failure with rollback", func(t *testing.T) {
		f := newFolding()
		f.buildSucceeded(t0)
		f.testPassed(t0.Add(time.Minute))
		h.publish(&releaseeventsv1.ReleasePublished{RunId: f.run.Id, Repository: f.ref,
			Release: &releasev1.Release{Version: "v0.3.0"}}, "r", f.run.Id, t0.Add(2*time.Minute))
		h.publish(&releaseeventsv1.DeploymentFailed{RunId: f.run.Id, Repository: f.ref, Deployment: &releasev1.Deployment{
			Environment: "staging", Version: "v0.3.0", Reason: "verification failed: GET /healthz answered 500"}}, "d", f.run.Id, t0.Add(3*time.Minute))
		h.publish(&releaseeventsv1.ServiceRolledBack{RunId: f.run.Id, Repository: f.ref, Environment: "staging",
			FromVersion: "v0.3.0", ToVersion: "v0.2.0"}, "d", f.run.Id, t0.Add(4*time.Minute))
		f.releaseFinished(&releaseeventsv1.ReleaseFinished{Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED,
			Version: "v0.3.0", Reason: "verification failed on staging", RolledBack: true}, t0.Add(5*time.Minute))
		run := f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
		if want := "release failed: verification failed on staging; rolled back"; run.FailureReason != want {
			t.Errorf("failure reason %q, want %q", run.FailureReason, want)
		}
		r := stages(run)["release"]
		wantDetail := "deployment of v0.3.0 failed on staging: verification failed: GET /healthz answered 500; rolled back staging to v0.2.0"
		if r.Status != sourcev1.StageStatus_STAGE_STATUS_FAILED || r.Detail != wantDetail || run.ReleaseVersion != "v0.3.0" {
			t.Errorf("release stage = %v (version %q); want failed with detail %q", r, run.ReleaseVersion, wantDetail)
		}
		f.finishedOnce()
	})

	t.Run("release skipped counts as success", func(t *testing.T) {
		f := newFolding()
		f.buildSucceeded(t0)
		f.testPassed(t0.Add(time.Minute))
		f.releaseFinished(&releaseeventsv1.ReleaseFinished{Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED,
			Reason: "branch feature is not a release branch"}, t0.Add(2*time.Minute))
		run := f.waitStatus(sourcev1.RunStatus_RUN_STATUS_SUCCEEDED)
		r := stages(run)["release"]
		if r.Status != sourcev1.StageStatus_STAGE_STATUS_SKIPPED || r.Reason != "branch feature is not a release branch" {
			t.Errorf("release stage = %v", r)
		}
		if p := f.finishedOnce(); p.Status != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
			t.Errorf("RunFinished = %v", p)
		}
	})
}

// newAppRun starts a harness with the repository "app" and triggers a run
// of it.
func newAppRun(t *testing.T) (*harness, *folding) {
	t.Helper()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	run := h.trigger("app", "")
	return h, &folding{h: h, run: run, ref: repoRef(run, repo.Url)}
}

// TestWatchRun follows a run from queued to its end; the stream ends after
// the final state.
func TestWatchRun(t *testing.T) {
	t.Parallel()
	h, f := newAppRun(t)
	run := f.run

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stream, err := h.client.WatchRun(ctx, &sourcev1.WatchRunRequest{RunId: run.Id})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	next := func() *sourcev1.Run {
		t.Helper()
		if !stream.Receive() {
			t.Fatalf("the stream ended early: %v", stream.Err())
		}
		return stream.Msg().Run
	}
	if got := next(); got.Status != sourcev1.RunStatus_RUN_STATUS_QUEUED {
		t.Fatalf("first message: %v, want the queued run", got.Status)
	}
	f.buildStarted(time.Now())
	got := next()
	for got.Status == sourcev1.RunStatus_RUN_STATUS_QUEUED {
		got = next() // the run's admission, if it came after the first message
	}
	if got.Status != sourcev1.RunStatus_RUN_STATUS_RUNNING || stages(got)["build"].Status != sourcev1.StageStatus_STAGE_STATUS_RUNNING {
		t.Fatalf("after build.started: %v", got)
	}
	f.buildSucceeded(time.Now())
	f.testPassed(time.Now())
	f.releaseFinished(&releaseeventsv1.ReleaseFinished{Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED, Version: "v1.0.0"}, time.Now())
	for got.Status == sourcev1.RunStatus_RUN_STATUS_RUNNING {
		got = next()
	}
	if got.Status != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED || got.ReleaseVersion != "v1.0.0" || got.Pipeline == nil {
		t.Errorf("final message: %v", got)
	}
	if stream.Receive() {
		t.Errorf("a message after the final state: %v", stream.Msg().Run)
	}
	if err := stream.Err(); err != nil {
		t.Errorf("the stream ended with %v, want a clean end", err)
	}
}

// A run that leaves the queue is announced once (RunStarted, a CDEvents
// pipelinerun.started), however its build's events arrive: redelivered,
// a step before the build's start, the build's end before both.
func TestRunStartedOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for name, publish := range map[string]func(f *folding){
		"in order, redelivered": func(f *folding) {
			started := h.publish(&buildeventsv1.BuildStarted{RunId: f.run.Id, BuildId: "b-" + f.run.Id, Repository: f.ref}, "b-"+f.run.Id, f.run.Id, t0)
			h.publishEvent(started, true)
			f.buildSucceeded(t0.Add(time.Minute))
		},
		"a step first": func(f *folding) {
			h.publish(&buildeventsv1.StepStarted{RunId: f.run.Id, BuildId: "b-" + f.run.Id, Step: "compile", Repository: f.ref}, "b-"+f.run.Id+"/compile", f.run.Id, t0)
			f.buildStarted(t0)
			f.buildSucceeded(t0.Add(time.Minute))
		},
		"the end first": func(f *folding) {
			f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_FAILED, FailedStep: "compile", ExitCode: 1}, t0.Add(time.Minute))
			f.buildStarted(t0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			run := h.trigger("app", "")
			f := &folding{h: h, run: run, ref: repoRef(run, repo.Url)}
			publish(f)
			f.h.waitConsumed()
			h.outboxBarrier("app")
			got := h.runEvents(subjectRunStarted, run.Id)
			if len(got) != 1 {
				t.Fatalf("%d RunStarted events, want 1", len(got))
			}
			rs := payload[*sourceeventsv1.RunStarted](t, got[0])
			if rs.GetRunId() != run.Id || rs.GetCommit() != run.Commit || rs.GetRepository().GetName() != "app" || got[0].SubjectID != run.Id {
				t.Errorf("RunStarted %v about %s", rs, got[0].SubjectID)
			}
			if got[0].Kind.Type != "dev.cdevents.pipelinerun.started.0.3.0" || got[0].Content["pipelineName"] != "app" {
				t.Errorf("RunStarted is a %s with content %v", got[0].Kind.Type, got[0].Content)
			}
		})
	}
}

// The streams are consumed independently, so a run's release and test
// events may be folded before its build's (source-build has the most events
// to fold; under load it lags the others). The run succeeds only once the
// build's end is folded too: GetRun never shows a finished run whose build
// is still pending without its start time, and WatchRun does not end on one.
func TestRunSucceedsOnceItsBuildIsFolded(t *testing.T) {
	t.Parallel()
	h, f := newAppRun(t)
	run := f.run
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

	f.testPassed(t0.Add(2 * time.Minute))
	f.releaseFinished(&releaseeventsv1.ReleaseFinished{Outcome: releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED,
		Reason: "branch main is not a release branch"}, t0.Add(3*time.Minute))
	h.waitConsumed()
	got := h.getRun(run.Id)
	if got.Status != sourcev1.RunStatus_RUN_STATUS_RUNNING {
		t.Fatalf("run %v with its build not folded yet (build stage %v); want running", got.Status, stages(got)["build"])
	}

	f.buildStarted(t0)
	f.buildSucceeded(t0.Add(time.Minute))
	got = f.waitStatus(sourcev1.RunStatus_RUN_STATUS_SUCCEEDED)
	b := stages(got)["build"]
	if b.Status != sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED || !at(b.StartTime).Equal(t0) || !at(b.EndTime).Equal(t0.Add(time.Minute)) {
		t.Errorf("build stage = %v; want succeeded from %v to %v", b, t0, t0.Add(time.Minute))
	}
	if !at(got.EndTime).Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("run ended at %v, want the release's end %v", at(got.EndTime), t0.Add(3*time.Minute))
	}
	if p := f.finishedOnce(); p.Status != sourcev1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Errorf("RunFinished = %v", p)
	}
}
