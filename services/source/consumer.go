package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/servicekit"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// Consumers are the service's event ports: one consumer per stream of
// the stages that follow (deploy/nats/consumers/source), each folding the
// stage's events into the run summaries.
func (s *Service) Consumers() []servicekit.Consumer {
	var out []servicekit.Consumer
	for _, durable := range []string{"source-build", "source-test", "source-release"} {
		out = append(out, servicekit.Consumer{
			Durable: durable,
			Handler: func(ctx context.Context, ev events.Event, _ events.Delivery) error {
				return s.Fold(ctx, durable, ev)
			},
		})
	}
	return out
}

// runIDOf is the run an event is about, "" when none (a rollback asked for
// by hand, for instance).
func runIDOf(ev events.Event) string {
	if p, ok := ev.Payload.(interface{ GetRunId() string }); ok && p.GetRunId() != "" {
		return p.GetRunId()
	}
	return ev.ChainID
}

// Fold applies one event of another service to its run's summary, once per
// consumer and event id, in one transaction with the RunFinished event it
// may cause.
func (s *Service) Fold(ctx context.Context, consumer string, ev events.Event) error {
	runID := runIDOf(ev)
	if runID == "" {
		return nil
	}
	var changed, published bool
	err := s.store.InTx(ctx, func(tx *sql.Tx) error {
		changed, published = false, false
		first, err := events.MarkProcessed(ctx, tx, consumer, ev.ID)
		if err != nil || !first {
			return err
		}
		run, err := lockRun(ctx, tx, runID)
		if errors.Is(err, apierror.ErrNotFound) {
			s.log.Warn("event for a run this service does not know; ignored",
				slog.String("run_id", runID), slog.String("event_type", ev.Kind.Type), slog.String("event_id", ev.ID))
			return nil
		}
		if err != nil {
			return err
		}
		wasQueued, wasFinal := run.Status == domain.RunQueued, run.Status.Final()
		if !apply(&run, ev) {
			return nil
		}
		if err := updateRun(ctx, tx, run); err != nil {
			return err
		}
		changed = true
		if wasQueued && run.Status != domain.RunQueued {
			if err := enqueueRunStarted(ctx, tx, run, ev); err != nil {
				return err
			}
			published = true
		}
		if wasFinal || !run.Status.Final() {
			return nil
		}
		fin, err := runFinishedEvent(run)
		if err != nil {
			return err
		}
		published = true
		return events.Enqueue(ctx, tx, fin)
	})
	if err != nil {
		return fmt.Errorf("fold %s into run %s: %w", ev.Kind.Type, runID, err)
	}
	if changed {
		s.changes.notify()
	}
	if published {
		s.outbox.Kick()
	}
	return nil
}

// enqueueRunStarted announces that run left the queue (RunStarted, a
// CDEvents pipelinerun.started): source owns runs, so it says when one
// starts, once, as it folds the first event of the run's build.
func enqueueRunStarted(ctx context.Context, tx *sql.Tx, run domain.Run, cause events.Event) error {
	var buildID string
	if p, ok := cause.Payload.(interface{ GetBuildId() string }); ok {
		buildID = p.GetBuildId()
	}
	ev, err := events.New(&sourceeventsv1.RunStarted{
		RunId:      run.ID,
		Repository: &sourceeventsv1.RepositoryRef{Id: run.RepositoryID, Name: run.Repository, Url: run.RepositoryURL},
		Commit:     run.Commit,
		Branch:     run.Branch,
		BuildId:    buildID,
	}, run.ID, run.ID)
	if err != nil {
		return err
	}
	return events.Enqueue(ctx, tx, ev)
}

// apply folds one event into run and reports whether it changed.
func apply(run *domain.Run, ev events.Event) bool {
	at := ev.Time.UTC()
	switch p := ev.Payload.(type) {
	case *buildeventsv1.BuildStarted:
		return run.StartStage(domain.StageBuild, at)
	case *buildeventsv1.StepStarted, *buildeventsv1.StepFinished:
		return run.StartStage(domain.StageBuild, time.Time{})
	case *buildeventsv1.BuildFinished:
		return applyBuildFinished(run, p, at)
	case *testeventsv1.TestRunStarted:
		return run.StartStage(domain.StageTest, at)
	case *testeventsv1.TestRunFinished:
		return applyTestRunFinished(run, p, at)
	case *releaseeventsv1.ReleasePublished:
		started := run.StartStage(domain.StageRelease, at)
		return run.SetReleaseVersion(p.GetRelease().GetVersion()) || started
	case *releaseeventsv1.ServiceDeployed:
		d := p.GetDeployment()
		if d.GetRollback() {
			return false // told by ServiceRolledBack
		}
		// A commit released before is redeployed without a new
		// ReleasePublished: the deployment tells when the stage started.
		started := run.StartStage(domain.StageRelease, prototime.Time(d.GetCreateTime()))
		return run.AddStageDetail(domain.StageRelease, fmt.Sprintf("deployed %s to %s", d.GetVersion(), d.GetEnvironment())) || started
	case *releaseeventsv1.DeploymentFailed:
		d := p.GetDeployment()
		started := false
		if !d.GetRollback() {
			started = run.StartStage(domain.StageRelease, prototime.Time(d.GetCreateTime()))
		}
		text := fmt.Sprintf("deployment of %s failed on %s", d.GetVersion(), d.GetEnvironment())
		if d.GetReason() != "" {
			text += ": " + d.GetReason()
		}
		return run.AddStageDetail(domain.StageRelease, text) || started
	case *releaseeventsv1.ServiceRolledBack:
		text := fmt.Sprintf("rolled back %s to %s", p.GetEnvironment(), p.GetToVersion())
		if p.GetToVersion() == "" {
			text = "rolled back " + p.GetEnvironment()
		}
		return run.AddStageDetail(domain.StageRelease, text)
	case *releaseeventsv1.ReleaseFinished:
		return applyReleaseFinished(run, p, at)
	}
	return false // artifacts and the like add nothing to the summary
}

func applyBuildFinished(run *domain.Run, p *buildeventsv1.BuildFinished, at time.Time) bool {
	switch p.GetStatus() {
	case buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED:
		return run.FinishStage(domain.StageBuild, domain.StageOutcome{
			Status: domain.StageSucceeded, At: at, Detail: artifactsDetail(p.GetArtifacts()),
		})
	case buildv1.BuildStatus_BUILD_STATUS_FAILED, buildv1.BuildStatus_BUILD_STATUS_CANCELLED:
		cancelled := p.GetStatus() == buildv1.BuildStatus_BUILD_STATUS_CANCELLED
		reason := firstOf(p.GetFailureReason(), domain.StepFailure(p.GetFailedStep(), int(p.GetExitCode())))
		if reason == "" && !cancelled {
			reason = "the build failed"
		}
		return run.FinishStage(domain.StageBuild, domain.StageOutcome{
			Status: domain.StageFailed, At: at, Reason: reason, FailedStep: p.GetFailedStep(),
			ExitCode: int(p.GetExitCode()), LastLogLines: p.GetLastLogLines(), Cancelled: cancelled,
		})
	case buildv1.BuildStatus_BUILD_STATUS_QUEUED, buildv1.BuildStatus_BUILD_STATUS_RUNNING:
		return run.StartStage(domain.StageBuild, time.Time{})
	}
	return false
}

func artifactsDetail(artifacts []*buildv1.Artifact) string {
	if len(artifacts) == 0 {
		return ""
	}
	names := make([]string, len(artifacts))
	for i, a := range artifacts {
		names[i] = a.GetName()
	}
	noun := "artifacts"
	if len(names) == 1 {
		noun = "artifact"
	}
	return fmt.Sprintf("%d %s: %s", len(names), noun, strings.Join(names, ", "))
}

func applyTestRunFinished(run *domain.Run, p *testeventsv1.TestRunFinished, at time.Time) bool {
	c := p.GetCounts()
	counts := domain.TestCounts(int(c.GetPassed()), int(c.GetFailed()), int(c.GetSkipped()))
	switch p.GetStatus() {
	case testv1.TestRunStatus_TEST_RUN_STATUS_PASSED:
		return run.FinishStage(domain.StageTest, domain.StageOutcome{Status: domain.StageSucceeded, At: at, Detail: counts})
	case testv1.TestRunStatus_TEST_RUN_STATUS_FAILED, testv1.TestRunStatus_TEST_RUN_STATUS_ERROR:
		var parts []string
		if r := firstOf(p.GetFailureReason(), domain.StepFailure(p.GetFailedStep(), int(p.GetExitCode()))); r != "" {
			parts = append(parts, r)
		}
		parts = append(parts, counts)
		if cases := p.GetFailedCases(); len(cases) > 0 {
			parts = append(parts, "failing: "+strings.Join(cases, ", "))
		}
		return run.FinishStage(domain.StageTest, domain.StageOutcome{
			Status: domain.StageFailed, At: at, Reason: strings.Join(parts, "; "), FailedStep: p.GetFailedStep(),
			ExitCode: int(p.GetExitCode()), LastLogLines: p.GetLastLogLines(), Detail: counts,
		})
	case testv1.TestRunStatus_TEST_RUN_STATUS_RUNNING:
		return run.StartStage(domain.StageTest, time.Time{})
	}
	return false
}

func applyReleaseFinished(run *domain.Run, p *releaseeventsv1.ReleaseFinished, at time.Time) bool {
	versioned := run.SetReleaseVersion(p.GetVersion())
	var o domain.StageOutcome
	switch p.GetOutcome() {
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED:
		o = domain.StageOutcome{Status: domain.StageSucceeded, At: at}
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED:
		reason := firstOf(p.GetReason(), "a deployment failed")
		if p.GetRolledBack() && !strings.Contains(reason, "rolled back") {
			reason += "; rolled back"
		}
		o = domain.StageOutcome{Status: domain.StageFailed, At: at, Reason: reason}
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED:
		o = domain.StageOutcome{Status: domain.StageSkipped, At: at, Reason: firstOf(p.GetReason(), "nothing to release")}
	default:
		return versioned
	}
	return run.FinishStage(domain.StageRelease, o) || versioned
}

func firstOf(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
