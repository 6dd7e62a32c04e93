package release

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/services/release/domain"
)

// rollbackAfterFailure puts the environment back to its last verified
// release that is not bad (what ran there before the failed deploy), once
// per run, and says what happened. Its output goes to w under
// rollback:<env>.
func (s *Service) rollbackAfterFailure(ctx context.Context, st stage, failed domain.Release, env domain.Environment, why string, w *steplog.Writer, held *heldLock) (string, bool, error) {
	log := st.log.With(slog.String("environment", env.Name))
	step := domain.LogStep(domain.StepRollback, env.Name)
	rb, err := s.store.RunDeployment(ctx, st.runID, env.Name, true)
	var target domain.Release
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		good, err := s.store.LastGoodDeployment(ctx, st.repo.Name, env.Name, failed.ID)
		if errors.Is(err, apierror.ErrNotFound) {
			log.Warn("no earlier verified release to roll back to")
			note(w, step, "no earlier verified release of %s to roll back to", env.Name)
			return fmt.Sprintf("no earlier verified release of %s to roll back to", env.Name), false, nil
		}
		if err != nil {
			return "", false, err
		}
		if target, err = s.releaseOf(ctx, good); err != nil {
			return "", false, err
		}
		state, err := s.restoreState(ctx, st.repo.Name, env.Name)
		if err != nil {
			return "", false, err
		}
		rb = newDeployment(target, env.Name, st.runID, true)
		if err := s.store.InsertDeployment(ctx, rb); err != nil {
			return "", false, err
		}
		log.Info("rolling back", slog.String("to_version", target.Version.String()), slog.String("deployment_id", rb.ID))
		note(w, step, "rolling %s back to %s", env.Name, target.Version)
		if err := s.deploy(ctx, target, rollbackSpec(target, env), &rb, logTo{w: w, deploy: step, verify: step}, nil, state); err != nil {
			return "", false, err
		}
		if err := s.recordRollback(ctx, st, failed, target, rb, why, held); err != nil {
			return "", false, err
		}
	case err != nil:
		return "", false, err
	default:
		if target, err = s.releaseOf(ctx, rb); err != nil {
			return "", false, err
		}
		if rb.Status.InProgress() {
			log.Warn("found an interrupted rollback; failing it", slog.String("deployment_id", rb.ID))
			rb.Status, rb.Reason, rb.EndedAt = domain.DeploymentFailed, domain.InterruptedReason, time.Now().UTC()
			note(w, step, "the rollback of %s to %s was %s", env.Name, target.Version, rb.Reason)
			if err := s.recordRollback(ctx, st, failed, target, rb, why, held); err != nil {
				return "", false, err
			}
		}
	}
	if rb.Status == domain.DeploymentFailed {
		return fmt.Sprintf("rolling back %s to %s failed: %s", env.Name, target.Version, rb.Reason), false, nil
	}
	return fmt.Sprintf("rolled back %s to %s", env.Name, target.Version), true, nil
}

// rollbackSpec is how to deploy target to env: the way target's own
// pipeline says, or, when it did not know env, the way the failed one does.
func rollbackSpec(target domain.Release, env domain.Environment) domain.Environment {
	if own, ok := target.Environment(env.Name); ok {
		return own
	}
	return env
}

// releaseOf is the release d deployed.
func (s *Service) releaseOf(ctx context.Context, d domain.Deployment) (domain.Release, error) {
	rel, err := s.store.Release(ctx, d.ReleaseID)
	if err != nil {
		return domain.Release{}, fmt.Errorf("the release of deployment %s: %w", d.ID, err)
	}
	return rel, nil
}

// recordRollback stores the end of an automatic rollback with its event,
// only while held is this replica's (as recordDeployment).
func (s *Service) recordRollback(ctx context.Context, st stage, from, to domain.Release, rb domain.Deployment, why string, held *heldLock) error {
	ctx, cancel := detached(ctx) // as in recordDeployment
	defer cancel()
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := held.Fence(ctx, tx); err != nil {
			return err
		}
		if err := endDeployment(ctx, tx, rb); err != nil {
			return err
		}
		if rb.Status != domain.DeploymentVerified {
			return enqueue(ctx, tx, &releaseeventsv1.DeploymentFailed{
				RunId: st.runID, Repository: repositoryRef(st.repo), Deployment: deploymentProto(rb),
			}, rb.ID, st.runID)
		}
		return enqueue(ctx, tx, &releaseeventsv1.ServiceRolledBack{
			RunId:       st.runID,
			Repository:  repositoryRef(st.repo),
			Environment: rb.Environment,
			FromVersion: from.Version.String(),
			ToVersion:   to.Version.String(),
			Reason:      why,
			Deployment:  deploymentProto(rb),
		}, rb.ID, st.runID)
	})
}

// Rollback redeploys an earlier release of repository to environment and
// verifies it, synchronously. Without toVersion it picks the newest release
// verified in the environment whose version is older than the one running
// there now. The returned deployment says whether it was verified or failed
// (and why); an error means nothing was deployed (unknown repository,
// environment or version, no target) or the service stopped during the
// deploy. The output goes to a log of its own, under the deployment's id
// (GetLogs), step rollback:<environment>.
func (s *Service) Rollback(ctx context.Context, repository, environment, toVersion string) (domain.Deployment, error) {
	var want *domain.Version
	if toVersion != "" {
		v, err := domain.ParseVersion(toVersion)
		if err != nil {
			return domain.Deployment{}, fmt.Errorf("%w: %w", err, apierror.ErrInvalidArgument)
		}
		want = &v
	}
	if _, err := s.store.LatestRelease(ctx, repository); errors.Is(err, apierror.ErrNotFound) {
		return domain.Deployment{}, fmt.Errorf("repository %q has no releases (is the name right? has a run of it reached the release stage?): %w",
			repository, apierror.ErrNotFound)
	} else if err != nil {
		return domain.Deployment{}, err
	}

	// The deploy runs to its end even if the caller hangs up; only stopping
	// the service, or losing the environment's lock, interrupts it.
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(s.base, cancel)()
	held, err := s.locks.LockFor(ctx, work, environmentKey(repository, environment))
	if err != nil {
		return domain.Deployment{}, err
	}
	defer held.Unlock()

	if ok, err := s.store.HasDeployments(ctx, repository, environment); err != nil {
		return domain.Deployment{}, err
	} else if !ok {
		return domain.Deployment{}, fmt.Errorf("repository %q was never deployed to environment %q (is the environment's name right?): %w",
			repository, environment, apierror.ErrNotFound)
	}
	current, err := s.store.CurrentDeployment(ctx, repository, environment)
	hasCurrent := err == nil
	if err != nil && !errors.Is(err, apierror.ErrNotFound) {
		return domain.Deployment{}, err
	}
	target, err := s.rollbackTarget(ctx, repository, environment, want, current, hasCurrent)
	if err != nil {
		return domain.Deployment{}, err
	}
	if !target.PrunedAt.IsZero() {
		return domain.Deployment{}, fmt.Errorf("%w: %w", s.prunedError(target), apierror.ErrFailedPrecondition)
	}
	env, ok := target.Environment(environment)
	if !ok && hasCurrent {
		cur, err := s.releaseOf(ctx, current)
		if err != nil {
			return domain.Deployment{}, err
		}
		env, ok = cur.Environment(environment)
	}
	if !ok {
		return domain.Deployment{}, fmt.Errorf("release %s of %q does not say how to deploy to %q, and neither does the release running there; pick another version: %w",
			target.Version, repository, environment, apierror.ErrFailedPrecondition)
	}

	state, err := s.restoreState(ctx, repository, environment)
	if err != nil {
		return domain.Deployment{}, fmt.Errorf("rollback of %s to %s: the deploy state cannot be read; try again: %w: %w",
			environment, target.Version, err, apierror.ErrUnavailable)
	}
	d := newDeployment(target, environment, "", true)
	if err := s.store.InsertDeployment(ctx, d); err != nil {
		return domain.Deployment{}, err
	}
	log := s.log.With(slog.String("repository", repository), slog.String("environment", environment),
		slog.String("to_version", target.Version.String()), slog.String("deployment_id", d.ID))
	log.Info("rolling back on request")

	runCtx := held.Context()
	w, err := s.logs.Writer(runCtx, d.ID, logFlushInterval)
	if err != nil {
		return domain.Deployment{}, err
	}
	step := domain.LogStep(domain.StepRollback, environment)
	note(w, step, "rolling %s back to %s on request", environment, target.Version)
	err = s.deploy(runCtx, target, env, &d, logTo{w: w, deploy: step, verify: step}, nil, state)
	closeLog(runCtx, w, log)
	writeCtx, cancelWrite := detached(ctx)
	defer cancelWrite()
	defer func() {
		if err := s.logs.Complete(writeCtx, d.ID); err != nil {
			log.Error("marking the rollback's log complete failed", slog.Any("error", err))
		}
	}()
	if err != nil {
		if runCtx.Err() == nil {
			return domain.Deployment{}, err
		}
		d.Status, d.Reason, d.EndedAt = domain.DeploymentFailed, domain.InterruptedReason, time.Now().UTC()
		if _, err := s.recordManualRollback(writeCtx, held, target, d, current, hasCurrent); err != nil {
			return domain.Deployment{}, err
		}
		return domain.Deployment{}, fmt.Errorf("rollback of %s to %s interrupted (%s); try again: %w",
			environment, target.Version, stopReason(runCtx), apierror.ErrUnavailable)
	}
	if d, err = s.recordManualRollback(writeCtx, held, target, d, current, hasCurrent); err != nil {
		return domain.Deployment{}, err
	}
	if d.Status == domain.DeploymentVerified {
		log.Info("rolled back")
	} else {
		log.Warn("rollback failed", slog.String("reason", d.Reason))
	}
	return d, nil
}

// rollbackTarget picks the release to roll back to: want, or without it
// the newest release verified in environment whose version is older than
// the current one's.
func (s *Service) rollbackTarget(ctx context.Context, repository, environment string, want *domain.Version,
	current domain.Deployment, hasCurrent bool) (domain.Release, error) {
	if want == nil {
		if !hasCurrent {
			return domain.Release{}, fmt.Errorf("no deployment of %q to %q was ever verified, so there is no older release to pick; say which version to deploy: %w",
				repository, environment, apierror.ErrFailedPrecondition)
		}
		running, err := domain.ParseVersion(current.Version)
		if err != nil {
			return domain.Release{}, err
		}
		target, err := s.store.OlderVerifiedRelease(ctx, repository, environment, running)
		if errors.Is(err, apierror.ErrNotFound) {
			return domain.Release{}, fmt.Errorf("%s runs in %q and no older release of %q was verified there; nothing to roll back to (say which version to deploy to go elsewhere): %w",
				current.Version, environment, repository, apierror.ErrFailedPrecondition)
		}
		return target, err
	}
	target, err := s.store.ReleaseByVersion(ctx, repository, *want)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		return domain.Release{}, fmt.Errorf("%q has no release %s; list its releases to pick one: %w", repository, *want, apierror.ErrNotFound)
	case err != nil:
		return domain.Release{}, err
	case target.Status == domain.ReleaseBad:
		return domain.Release{}, fmt.Errorf("release %s of %q is bad (a deploy or verification of it failed); pick another version: %w",
			target.Version, repository, apierror.ErrFailedPrecondition)
	case hasCurrent && current.ReleaseID == target.ID:
		return domain.Release{}, fmt.Errorf("%s already runs in %q; nothing to do: %w", target.Version, environment, apierror.ErrFailedPrecondition)
	}
	return target, nil
}

// recordManualRollback stores the end of a manual rollback with its event;
// a verified one marks the deployment it replaced rolled back, fenced by
// the environment's lock: when the lock was lost meanwhile (another replica
// may deploy there now), the rollback is recorded as interrupted instead.
func (s *Service) recordManualRollback(ctx context.Context, held *heldLock, target domain.Release, d domain.Deployment, current domain.Deployment, hasCurrent bool) (domain.Deployment, error) {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if d.Status == domain.DeploymentVerified {
			if err := held.Fence(ctx, tx); err != nil {
				return err
			}
		}
		return s.recordManualRollbackIn(ctx, tx, target, d, current, hasCurrent)
	})
	if errors.Is(err, lease.ErrLost) {
		d.Status, d.Reason = domain.DeploymentFailed, domain.InterruptedReason
		err = s.inTx(ctx, func(tx *sql.Tx) error { return s.recordManualRollbackIn(ctx, tx, target, d, current, hasCurrent) })
	}
	return d, err
}

// recordManualRollbackIn is recordManualRollback's writes, in tx.
func (s *Service) recordManualRollbackIn(ctx context.Context, tx *sql.Tx, target domain.Release, d domain.Deployment, current domain.Deployment, hasCurrent bool) error {
	if err := endDeployment(ctx, tx, d); err != nil {
		return err
	}
	if d.Status != domain.DeploymentVerified {
		return enqueue(ctx, tx, &releaseeventsv1.DeploymentFailed{
			Repository: repositoryRef(target.Repository), Deployment: deploymentProto(d),
		}, d.ID, "")
	}
	from := ""
	if hasCurrent {
		from = current.Version
		if err := markRolledBack(ctx, tx, current.ID); err != nil {
			return err
		}
	}
	if err := setReleaseStatus(ctx, tx, target.ID, domain.ReleaseDeployed); err != nil {
		return err
	}
	return enqueue(ctx, tx, &releaseeventsv1.ServiceRolledBack{
		Repository:  repositoryRef(target.Repository),
		Environment: d.Environment,
		FromVersion: from,
		ToVersion:   target.Version.String(),
		Reason:      "rollback requested through the API",
		Deployment:  deploymentProto(d),
	}, d.ID, "")
}
