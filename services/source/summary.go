package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/prototime"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// The run summary: every event of the stages that follow source is folded
// into its run (the rules are domain.Run's), which announces when the run
// starts (RunStarted) and ends (RunFinished).

// runIDOf is the run an event is about, "" when none (a rollback asked for
// by hand, for instance).
func runIDOf(ev events.Event) string {
	if p, ok := ev.Payload.(interface{ GetRunId() string }); ok && p.GetRunId() != "" {
		return p.GetRunId()
	}
	return ev.ChainID
}

// Fold applies one event of another service to its run's summary, once per
// consumer and event id, in one transaction with the RunStarted and
// RunFinished events it may cause.
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
		if p, ok := ev.Payload.(*releaseeventsv1.ReleasePublished); ok {
			if published, err = s.requestForgeRelease(ctx, tx, run, p); err != nil {
				return err
			}
		}
		if !apply(&run, ev) {
			return nil
		}
		if err := updateRun(ctx, tx, run); err != nil {
			return err
		}
		changed = true
		if wasQueued && run.Status != domain.RunQueued {
			// Source owns runs, so it says when one starts: once, as it
			// folds the first event of the run's build.
			started, err := events.New(runStartedToProto(run, buildIDOf(ev)), run.ID, run.ID)
			if err != nil {
				return err
			}
			if err := events.Enqueue(ctx, tx, started); err != nil {
				return err
			}
			published = true
		}
		if wasFinal || !run.Status.Final() {
			return nil
		}
		fin, err := events.New(runFinishedToProto(run), run.ID, run.ID)
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
		// A run may have ended, making room for a waiting one.
		s.wakeAdmission()
	}
	return nil
}

// buildIDOf is the build an event names, "" when none.
func buildIDOf(ev events.Event) string {
	if p, ok := ev.Payload.(interface{ GetBuildId() string }); ok {
		return p.GetBuildId()
	}
	return ""
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
		return applyOutcome(run, domain.StageBuild, buildOutcome(p, at))
	case *testeventsv1.TestRunStarted:
		return run.StartStage(domain.StageTest, at)
	case *testeventsv1.TestRunFinished:
		return applyOutcome(run, domain.StageTest, testOutcome(p, at))
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
		versioned := run.SetReleaseVersion(p.GetVersion())
		finished := applyOutcome(run, domain.StageRelease, releaseOutcome(p, at))
		return finished || versioned
	}
	return false // artifacts and the like add nothing to the summary
}

// applyOutcome records what a stage's finished event says: its end, or
// that it runs (a build reported as still queued or running), or nothing
// (a status this service does not know, left empty by convert.go).
func applyOutcome(run *domain.Run, stage string, o domain.StageOutcome) bool {
	switch o.Status {
	case domain.StageSucceeded, domain.StageFailed, domain.StageSkipped:
		return run.FinishStage(stage, o)
	case domain.StageRunning:
		return run.StartStage(stage, time.Time{})
	}
	return false
}
