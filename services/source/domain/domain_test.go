package domain_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/source/domain"
)

func TestNameFromURL(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"https://github.com/sluicehq/Sluice.git": "sluice",
		"git@github.com:org/my_repo.git":         "my_repo",
		"/home/ada/src/Hello World/":             "hello-world",
		"file:///srv/git/app.git":                "app",
		"/tmp/.hidden":                           "hidden",
		"/tmp/...":                               "",
	} {
		if got := domain.NameFromURL(url); got != want {
			t.Errorf("NameFromURL(%q) = %q, want %q", url, got, want)
		}
	}
}

func newRun() domain.Run {
	return domain.NewRun("r1", domain.Repository{ID: "p1", Name: "app", URL: "/app"}, domain.Commit{SHA: "abc"}, "refs/heads/main", "main", domain.TriggerManual, nil, time.Unix(0, 0))
}

// A stage never moves back, and a run's end state never changes.
func TestFoldIsMonotonic(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRun()
	if !r.FinishStage(domain.StageBuild, domain.StageOutcome{Status: domain.StageSucceeded, At: t0.Add(time.Minute)}) {
		t.Fatal("finishing a pending stage changed nothing")
	}
	if r.Status != domain.RunRunning {
		t.Errorf("run %s after a finished stage, want running", r.Status)
	}
	// The late start fills the start time but not the status.
	if !r.StartStage(domain.StageBuild, t0) {
		t.Error("a late start with a time changed nothing")
	}
	if b := r.Stage(domain.StageBuild); b.Status != domain.StageSucceeded || !b.StartedAt.Equal(t0) {
		t.Errorf("build = %+v", b)
	}
	if r.StartStage(domain.StageBuild, t0.Add(time.Second)) {
		t.Error("a second start changed the stage")
	}
	if r.FinishStage(domain.StageBuild, domain.StageOutcome{Status: domain.StageFailed, Reason: "late"}) {
		t.Error("a finished stage finished again")
	}

	if !r.FinishStage(domain.StageTest, domain.StageOutcome{Status: domain.StageFailed, At: t0.Add(2 * time.Minute), Reason: "3 failed"}) {
		t.Fatal("test failure changed nothing")
	}
	if r.Status != domain.RunFailed || r.FailureReason != "test failed: 3 failed" || !r.EndedAt.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("run = %s %q %v", r.Status, r.FailureReason, r.EndedAt)
	}
	if rel := r.Stage(domain.StageRelease); rel.Status != domain.StageSkipped || rel.Reason != "the test stage failed" {
		t.Errorf("release = %+v, want skipped", rel)
	}
	if r.End(domain.RunSucceeded, "", t0.Add(time.Hour)) {
		t.Error("a failed run ended again")
	}
	if r.FinishStage(domain.StageRelease, domain.StageOutcome{Status: domain.StageSucceeded}) || r.Status != domain.RunFailed {
		t.Error("a skipped release was finished again, or the run's end changed")
	}
}

func TestFoldReasons(t *testing.T) {
	t.Parallel()
	r := newRun()
	r.FinishStage(domain.StageBuild, domain.StageOutcome{Status: domain.StageFailed, Reason: "build failed: step \"x\" timed out after 5m0s"})
	if want := `build failed: step "x" timed out after 5m0s`; r.FailureReason != want {
		t.Errorf("reason %q, want %q (no doubled prefix)", r.FailureReason, want)
	}
	if r.Stage(domain.StageTest).Status != domain.StageSkipped {
		t.Error("test stage not skipped after a failed build")
	}

	c := newRun()
	c.FinishStage(domain.StageBuild, domain.StageOutcome{Status: domain.StageFailed, Cancelled: true})
	if c.Status != domain.RunCancelled || c.FailureReason != "build was cancelled" {
		t.Errorf("cancelled build: %s %q", c.Status, c.FailureReason)
	}

	s := newRun()
	s.FinishStage(domain.StageBuild, domain.StageOutcome{Status: domain.StageSucceeded})
	s.FinishStage(domain.StageTest, domain.StageOutcome{Status: domain.StageSucceeded})
	s.FinishStage(domain.StageRelease, domain.StageOutcome{Status: domain.StageSkipped, Reason: "branch feature is not a release branch"})
	if s.Status != domain.RunSucceeded {
		t.Errorf("skipped release: run %s, want succeeded", s.Status)
	}
	if got := domain.StepFailure("compile", 2); got != `step "compile" exited with code 2` {
		t.Errorf("StepFailure = %q", got)
	}
}

func TestFailedRunSkipsEveryStage(t *testing.T) {
	t.Parallel()
	r := domain.NewFailedRun("r1", domain.Repository{ID: "p1"}, domain.Commit{SHA: "abc"}, "", "", domain.TriggerPoll, domain.MissingPipelineReason("abc"), time.Unix(1, 0))
	if r.Status != domain.RunFailed || r.FailureReason != ".sluice.yaml: not found at commit abc, nor any .sluice/*.yaml" {
		t.Errorf("run = %s %q", r.Status, r.FailureReason)
	}
	for _, s := range r.Stages {
		if s.Status != domain.StageSkipped {
			t.Errorf("stage %s = %s, want skipped", s.Name, s.Status)
		}
	}
}

// A run succeeds once every stage has ended, whatever order the stages'
// ends are folded in: the release's end folded before the build's events
// leaves the run running, with the build's start still to come.
func TestRunSucceedsOnceEveryStageEnded(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := newRun()
	r.FinishStage(domain.StageRelease, domain.StageOutcome{Status: domain.StageSkipped, At: t0.Add(3 * time.Minute), Reason: "not a release branch"})
	r.FinishStage(domain.StageTest, domain.StageOutcome{Status: domain.StageSucceeded, At: t0.Add(2 * time.Minute)})
	if r.Status != domain.RunRunning {
		t.Fatalf("run %s before its build's events were folded, want running", r.Status)
	}
	r.StartStage(domain.StageBuild, t0)
	if !r.FinishStage(domain.StageBuild, domain.StageOutcome{Status: domain.StageSucceeded, At: t0.Add(time.Minute)}) {
		t.Fatal("the build's end changed nothing")
	}
	if r.Status != domain.RunSucceeded || !r.EndedAt.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("run %s ended at %v, want succeeded at the release's end %v", r.Status, r.EndedAt, t0.Add(3*time.Minute))
	}
	if b := r.Stage(domain.StageBuild); !b.StartedAt.Equal(t0) {
		t.Errorf("build started at %v, want %v", b.StartedAt, t0)
	}
}
