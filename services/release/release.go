package release

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/steplog"
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
// failure (deploy.go, rollback.go). A run deploys only to the environments
// the platform lets its branch deploy to (Config.EnvironmentBranches), and
// never over its own commit or a newer one (ancestry.go): an older commit
// gets no version and is skipped. It is idempotent per run: a redelivered
// or duplicated event continues where the stage stopped and never deploys
// twice, except an interrupted deploy that its environment says to run
// again (on_interrupt: redeploy). On the event's last delivery (d) a stage that cannot go on ends
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

	// A run cancelled before its release was made releases nothing; once
	// made, the release goes on (a deploy is not cut in half).
	if rec.ReleaseID == "" {
		c, ok, err := s.cancels.Lookup(ctx, st.runID)
		if err != nil {
			return err
		}
		if ok {
			st.log.Info("release not begun: the run was cancelled", slog.String("by", c.By))
			return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_CANCELLED, "", c.Reason(), false)
		}
	}

	// Everything the stage needs came with the event: the pipeline and the
	// build's artifacts, passed on by build and test.
	if run.GetPipeline() == nil {
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, "",
			"the TestRunFinished event carries no pipeline (a test service older than this release service published it); trigger the run again", false)
	}
	spec := releaseSpecOf(run.GetPipeline())
	target := domain.Target(run.GetBranch(), run.GetRef())
	if reason := spec.SkipReason(target); reason != "" {
		st.log.Info("release skipped", slog.String("reason", reason))
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED, "", reason, false)
	}

	// The platform says where the branch may deploy; the pipeline only
	// narrows that (its branches), never widens it.
	envs, refused := spec.Deployable(target, s.branches)
	var left []string // why environments were left alone
	if len(refused) > 0 {
		reason := s.refusedReason(target, refused)
		if len(envs) == 0 {
			st.log.Info("release skipped", slog.String("reason", reason))
			return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED, "", reason, false)
		}
		st.log.Info("environments refused to the branch", slog.String("reason", reason))
		left = append(left, reason)
	}

	tag := "" // of a tag's run
	if t, ok := strings.CutPrefix(target, domain.TagPrefix); ok {
		tag = t
	}
	rel, older, err := s.ensureRelease(ctx, st, rec, run, spec, tag)
	if err != nil {
		return err
	}
	if older != "" {
		st.log.Info("release skipped", slog.String("reason", older))
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED, "", older, false)
	}
	// A duplicate of the run's event waits here until this one is done:
	// each environment's deploy writes the run's release log, which has
	// one writer at a time (a second would supersede the first).
	runHeld, err := s.locks.Lock(ctx, runKey(st.runID))
	if err != nil {
		return err
	}
	defer runHeld.Unlock()
	ctx = runHeld.Context()
	// A duplicate that waited for the lock finds the stage finished.
	if rec, err = s.store.beginRun(ctx, st.runID, st.repo.Name); err != nil {
		return err
	}
	if rec.State == runFinished {
		return s.logs.Complete(ctx, st.runID)
	}
	deployed := 0
	for i, env := range envs {
		res, err := s.releaseTo(ctx, st, rel, env)
		if err != nil {
			return err
		}
		if res.failed {
			st.log.Warn("release failed", slog.String("version", rel.Version.String()),
				slog.String("environment", env.Name), slog.String("reason", res.reason))
			return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED, rel.Version.String(), res.reason, res.rolledBack)
		}
		if res.left == "" {
			deployed++
			continue
		}
		st.log.Info("environment left alone", slog.String("version", rel.Version.String()),
			slog.String("environment", env.Name), slog.String("reason", res.left))
		left = append(left, res.left)
		if res.newer && i+1 < len(envs) {
			// The environments after this one are the newer release's run's
			// to deploy, once it verified here: this one was not.
			var rest []string
			for _, e := range envs[i+1:] {
				rest = append(rest, e.Name)
			}
			left = append(left, fmt.Sprintf("%s not deployed either: they come after %s, where a newer release runs", strings.Join(rest, ", "), env.Name))
			break
		}
	}
	reason := strings.Join(left, "; ")
	if deployed == 0 {
		st.log.Info("release skipped: nothing to deploy", slog.String("version", rel.Version.String()), slog.String("reason", reason))
		return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED, rel.Version.String(), reason, false)
	}
	st.log.Info("released", slog.String("version", rel.Version.String()))
	return s.finish(ctx, st, releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED, rel.Version.String(), reason, false)
}

// refusedReason says which environments the platform does not let target
// (a branch, or a tag's ref) deploy to, and which it lets deploy there.
func (s *Service) refusedReason(target string, refused []string) string {
	parts := make([]string, len(refused))
	for i, env := range refused {
		parts[i] = fmt.Sprintf("%s (allowed there: %s)", env, s.branches.Describe(env))
	}
	what := "branch"
	if strings.HasPrefix(target, domain.TagPrefix) {
		what = "tag ref"
	}
	return fmt.Sprintf("the platform's environment-branches setting does not let %s %q deploy automatically to %s",
		what, target, strings.Join(parts, ", "))
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
		// Complete with the event that says the stage ended.
		if err := steplog.CompleteIn(ctx, tx, st.runID); err != nil {
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
// time the run gets here: the version after the newest release whose
// commit is an ancestor of the run's (versions follow ancestry), its
// changelog from the commits since that release, and the build's
// artifacts, copied into KeptBucket first (keepArtifacts). A commit
// released before keeps its version: the run deploys that release again
// where it does not run yet. A commit that is an
// ancestor of a release's commit (older code than a released version) gets
// no version: older says why, and the stage is skipped. The run of a tag
// that names a version (tag, domain.TagVersion) is released with that
// version instead, when it keeps the rules (tagVersion); else, or when
// its commit has a release of another version, older says why.
func (s *Service) ensureRelease(ctx context.Context, st stage, rec stageRun, run *testeventsv1.TestRunFinished, spec domain.ReleaseSpec, tag string) (rel domain.Release, older string, err error) {
	if rel, ok, err := s.runRelease(ctx, rec); err != nil || ok {
		return rel, "", err
	}
	// One version at a time per repository.
	held, err := s.locks.Lock(ctx, repositoryKey(st.repo.Name))
	if err != nil {
		return domain.Release{}, "", err
	}
	defer held.Unlock()
	ctx = held.Context()
	// A duplicate of this event may have made the release while we waited.
	if rec, err = s.store.beginRun(ctx, st.runID, st.repo.Name); err != nil {
		return domain.Release{}, "", err
	}
	if rel, ok, err := s.runRelease(ctx, rec); err != nil || ok {
		return rel, "", err
	}

	commit := run.GetCommit()
	tagged, isVersion := domain.TagVersion(tag)
	existing, err := s.store.ReleaseOfCommit(ctx, st.repo.Name, commit)
	switch {
	case err == nil && isVersion && existing.Version != tagged:
		return domain.Release{}, fmt.Sprintf("tag %s: commit %s is released already, as %s; a commit has one release",
			tag, domain.ShortSHA(commit), existing.Version), nil
	case err == nil:
		st.log.Info("commit already released; deploying that release where it does not run yet", slog.String("version", existing.Version.String()))
		err := s.store.InTx(ctx, func(tx *sql.Tx) error {
			if err := held.Fence(ctx, tx); err != nil {
				return err
			}
			return setRunRelease(ctx, tx, st.runID, existing.ID)
		})
		return existing, "", err
	case !errors.Is(err, apierror.ErrNotFound):
		return domain.Release{}, "", err
	}

	base, older, err := s.placeCommit(ctx, st.repo.Name, commit)
	if err != nil || older != "" {
		return domain.Release{}, older, err
	}
	var from string
	var prevVersion *domain.Version
	if base != nil {
		from, prevVersion = base.Commit, &base.Version
	}
	listed, err := s.source.ListCommits(ctx, &sourcev1.ListCommitsRequest{
		Repository: st.repo.Name, From: from, To: commit, Limit: maxCommits,
	})
	if err != nil {
		return domain.Release{}, "", fmt.Errorf("list commits of %s from %q to %s: %w", st.repo.Name, from, commit, err)
	}
	commits := commitsOf(listed.GetCommits())
	var version domain.Version
	if isVersion {
		if version, older, err = s.tagVersion(ctx, st.repo.Name, tag, tagged, base); err != nil || older != "" {
			return domain.Release{}, older, err
		}
	} else if version, err = s.freeVersion(ctx, st.repo.Name, domain.NextVersion(prevVersion, commits), commits); err != nil {
		return domain.Release{}, "", err
	}
	rel = domain.Release{
		ID:           ids.New(),
		Repository:   st.repo,
		Version:      version,
		Commit:       commit,
		RunID:        st.runID,
		Changelog:    domain.Changelog(commits),
		Artifacts:    artifactsOf(run.GetArtifacts()),
		Environments: spec.Environments,
		Status:       domain.ReleasePublished,
		CreatedAt:    time.Now().UTC(),
	}
	// Copied before the release is made and announced: every deploy and
	// rollback of it fetches the copies, which outlive the build's objects.
	if rel.Artifacts, err = s.keepArtifacts(ctx, st, rel.Artifacts); err != nil {
		return domain.Release{}, "", err
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if err := held.Fence(ctx, tx); err != nil {
			return err
		}
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
		return domain.Release{}, "", err
	}
	st.log.Info("release published", slog.String("version", rel.Version.String()), slog.Int("commits", len(commits)),
		slog.Int("artifacts", len(rel.Artifacts)))
	return rel, "", nil
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
