package release

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/services/release/domain"
)

const (
	// maxCommits bounds the commits asked of source for one release.
	maxCommits = 10000
	// recordTimeout bounds a write that must happen although the work's
	// context ended (the service is stopping): the end of a deploy, of a
	// stage, of a manual rollback.
	recordTimeout = 5 * time.Second
)

// stage is one run's release stage in progress.
type stage struct {
	runID string
	repo  domain.Repository
	log   *slog.Logger
}

// ReleaseRun is the release stage of a run whose tests passed (run is its
// TestRunFinished; runs whose tests did not pass are not released): the
// next version and its changelog, the release record, then each of the
// pipeline's environments in order, deployed, verified and rolled back on
// failure (deploy.go, rollback.go). It is idempotent per run: a redelivered
// or duplicated event continues where the stage stopped and never deploys
// twice. On the event's last delivery (d) a stage that cannot go on ends
// FAILED with the reason, so that the run does not stay "running" for ever.
func (s *Service) ReleaseRun(ctx context.Context, eventID string, run *testeventsv1.TestRunFinished, d events.Delivery) error {
	err := s.releaseStage(ctx, eventID, run)
	if err == nil || (!d.Last() && !errors.Is(err, events.ErrPermanent)) {
		return err
	}
	return s.giveUp(ctx, run, d, err)
}

// giveUp ends a run's release stage FAILED with the reason it could not
// go on. A deployment left in progress is failed too: whether its command
// changed the environment is unknown, and the reason says so.
func (s *Service) giveUp(ctx context.Context, run *testeventsv1.TestRunFinished, d events.Delivery, cause error) error {
	st := stage{runID: run.GetRunId(), repo: repositoryOf(run.GetRepository())}
	dctx, cancel := detached(ctx)
	defer cancel()
	n, err := s.store.FailInProgressDeployments(dctx, st.runID, domain.InterruptedReason)
	if err != nil {
		return errors.Join(cause, err)
	}
	reason := fmt.Sprintf("gave up after %d deliveries: %v", d.NumDelivered(), cause)
	if n > 0 {
		reason += "; a deployment was interrupted and its environment may need `sluice rollback`"
	}
	s.log.Error("release stage failed on its last delivery", slog.String("run_id", st.runID), slog.Any("error", cause))
	if err := s.finish(dctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, "", reason, false); err != nil {
		return errors.Join(cause, err)
	}
	return nil
}

// detached is a context for a write that must happen even when ctx ended
// (the process is stopping), bounded by recordTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
}

// releaseStage runs the stage; see ReleaseRun.
func (s *Service) releaseStage(ctx context.Context, eventID string, run *testeventsv1.TestRunFinished) error {
	if run.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
		return nil
	}
	st := stage{runID: run.GetRunId(), repo: repositoryOf(run.GetRepository())}
	st.log = s.log.With(slog.String("run_id", st.runID), slog.String("repository", st.repo.Name))
	rec, err := s.store.beginRun(ctx, st.runID, st.repo.Name)
	if err != nil {
		return err
	}
	if rec.State == runFinished {
		st.log.Debug("release stage already finished; duplicate event ignored", slog.String("event_id", eventID))
		// The stage may have ended just before its log was marked complete.
		return s.logs.Complete(ctx, st.runID)
	}

	// Everything the stage needs came with the event: the pipeline and the
	// build's artifacts, passed on by build and test.
	if run.GetPipeline() == nil {
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, "",
			"the TestRunFinished event carries no pipeline (a test service older than this release service published it); trigger the run again", false)
	}
	spec := releaseSpecOf(run.GetPipeline())
	if reason := spec.SkipReason(run.GetBranch()); reason != "" {
		st.log.Info("release skipped", slog.String("reason", reason))
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED, "", reason, false)
	}

	rel, err := s.ensureRelease(ctx, st, rec, run, spec)
	if err != nil {
		return err
	}
	for _, env := range spec.Environments {
		res, err := s.releaseTo(ctx, st, rel, env)
		if err != nil {
			return err
		}
		if res.failed {
			st.log.Warn("release failed", slog.String("version", rel.Version.String()),
				slog.String("environment", env.Name), slog.String("reason", res.reason))
			return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, rel.Version.String(), res.reason, res.rolledBack)
		}
	}
	st.log.Info("released", slog.String("version", rel.Version.String()))
	return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED, rel.Version.String(), "", false)
}

// finish ends the run's release stage and announces it, once, and marks
// the run's release log complete.
func (s *Service) finish(ctx context.Context, st stage, outcome releaseeventsv1.ReleaseOutcome, version, reason string, rolledBack bool) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		first, err := finishRun(ctx, tx, st.runID, outcomeName(outcome), reason)
		if err != nil || !first {
			return err
		}
		return enqueue(ctx, tx, &releaseeventsv1.ReleaseFinished{
			RunId:      st.runID,
			Repository: repositoryRef(st.repo),
			Outcome:    outcome,
			Version:    version,
			Reason:     reason,
			RolledBack: rolledBack,
		}, st.runID, st.runID)
	})
	if err != nil {
		return err
	}
	return s.logs.Complete(ctx, st.runID)
}

// ensureRelease returns the run's release, making it if this is the first
// time the run gets here: the next version after the repository's highest,
// its changelog from the commits since that release, and the build's
// artifacts. A commit released before is released again under its version.
func (s *Service) ensureRelease(ctx context.Context, st stage, rec stageRun, run *testeventsv1.TestRunFinished, spec domain.ReleaseSpec) (domain.Release, error) {
	if rel, ok, err := s.runRelease(ctx, rec); err != nil || ok {
		return rel, err
	}
	// One version at a time per repository.
	unlock, err := s.locks.Lock(ctx, repositoryKey(st.repo.Name))
	if err != nil {
		return domain.Release{}, err
	}
	defer unlock()
	// A duplicate of this event may have made the release while we waited.
	if rec, err = s.store.beginRun(ctx, st.runID, st.repo.Name); err != nil {
		return domain.Release{}, err
	}
	if rel, ok, err := s.runRelease(ctx, rec); err != nil || ok {
		return rel, err
	}

	commit := run.GetCommit()
	existing, err := s.store.ReleaseOfCommit(ctx, st.repo.Name, commit)
	switch {
	case err == nil:
		st.log.Info("commit already released; deploying that release again", slog.String("version", existing.Version.String()))
		err := s.store.InTx(ctx, func(tx *sql.Tx) error { return setRunRelease(ctx, tx, st.runID, existing.ID) })
		return existing, err
	case !errors.Is(err, apierror.ErrNotFound):
		return domain.Release{}, err
	}

	var from string
	var prevVersion *domain.Version
	switch prev, err := s.store.LatestRelease(ctx, st.repo.Name); {
	case err == nil:
		from, prevVersion = prev.Commit, &prev.Version
	case !errors.Is(err, apierror.ErrNotFound):
		return domain.Release{}, err
	}
	listed, err := s.source.ListCommits(ctx, &sourcev1.ListCommitsRequest{
		Repository: st.repo.Name, From: from, To: commit, Limit: maxCommits,
	})
	if err != nil {
		return domain.Release{}, fmt.Errorf("list commits of %s from %q to %s: %w", st.repo.Name, from, commit, err)
	}
	commits := commitsOf(listed.GetCommits())
	rel := domain.Release{
		ID:           ids.New(),
		Repository:   st.repo,
		Version:      domain.NextVersion(prevVersion, commits),
		Commit:       commit,
		RunID:        st.runID,
		Changelog:    domain.Changelog(commits),
		Artifacts:    artifactsOf(run.GetArtifacts()),
		Environments: spec.Environments,
		Status:       domain.ReleasePublished,
		CreatedAt:    time.Now().UTC(),
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := insertRelease(ctx, tx, rel); err != nil {
			return err
		}
		if err := setRunRelease(ctx, tx, st.runID, rel.ID); err != nil {
			return err
		}
		return enqueue(ctx, tx, &releaseeventsv1.ReleasePublished{
			RunId:      st.runID,
			Repository: repositoryRef(st.repo),
			Release:    releaseProto(rel),
		}, rel.ID, st.runID)
	})
	if err != nil {
		return domain.Release{}, err
	}
	st.log.Info("release published", slog.String("version", rel.Version.String()), slog.Int("commits", len(commits)),
		slog.Int("artifacts", len(rel.Artifacts)))
	return rel, nil
}

// runRelease is the release rec's run made, if it made one yet.
func (s *Service) runRelease(ctx context.Context, rec stageRun) (domain.Release, bool, error) {
	if rec.ReleaseID == "" {
		return domain.Release{}, false, nil
	}
	rel, err := s.store.Release(ctx, rec.ReleaseID)
	if err != nil {
		return domain.Release{}, false, fmt.Errorf("the release of run %s: %w", rec.RunID, err)
	}
	return rel, true, nil
}
