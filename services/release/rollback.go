package release

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/services/release/domain"
)

// recordTimeout bounds the write that records an interrupted manual
// rollback after the service was told to stop.
const recordTimeout = 5 * time.Second

// Rollback redeploys an earlier release of repository to environment and
// verifies it, synchronously. toVersion defaults to the newest release
// verified there before the one running now. The returned deployment says
// whether it was verified or failed (and why); an error means nothing was
// deployed (unknown repository, environment or version, a bad target) or
// the service stopped during the deploy.
func (s *Service) Rollback(ctx context.Context, repository, environment, toVersion string) (domain.Deployment, error) {
	if !safeName.MatchString(repository) {
		return domain.Deployment{}, fmt.Errorf("repository %q: %w", repository, apierror.ErrInvalidArgument)
	}
	if !safeName.MatchString(environment) {
		return domain.Deployment{}, fmt.Errorf("environment %q: %w", environment, apierror.ErrInvalidArgument)
	}
	var want *domain.Version
	if toVersion != "" {
		v, err := domain.ParseVersion(toVersion)
		if err != nil {
			return domain.Deployment{}, fmt.Errorf("to_version: %w: %w", apierror.ErrInvalidArgument, err)
		}
		want = &v
	}
	if _, ok, err := s.store.LatestRelease(ctx, repository); err != nil {
		return domain.Deployment{}, err
	} else if !ok {
		return domain.Deployment{}, fmt.Errorf("repository %q has no releases: %w", repository, apierror.ErrNotFound)
	}

	unlock, err := s.locks.Lock(ctx, environmentKey(repository, environment))
	if err != nil {
		return domain.Deployment{}, err
	}
	defer unlock()

	if ok, err := s.store.HasDeployments(ctx, repository, environment); err != nil {
		return domain.Deployment{}, err
	} else if !ok {
		return domain.Deployment{}, fmt.Errorf("repository %q was never deployed to environment %q: %w",
			repository, environment, apierror.ErrNotFound)
	}
	current, hasCurrent, err := s.store.CurrentDeployment(ctx, repository, environment)
	if err != nil {
		return domain.Deployment{}, err
	}
	target, err := s.rollbackTarget(ctx, repository, environment, want, current, hasCurrent)
	if err != nil {
		return domain.Deployment{}, err
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
		return domain.Deployment{}, fmt.Errorf("release %s of %q does not say how to deploy to %q: %w",
			target.Version, repository, environment, apierror.ErrFailedPrecondition)
	}

	d := newDeployment(target, environment, "", true)
	if err := s.store.InsertDeployment(ctx, d); err != nil {
		return domain.Deployment{}, err
	}
	log := s.log.With(slog.String("repository", repository), slog.String("environment", environment),
		slog.String("to_version", target.Version.String()), slog.String("deployment_id", d.ID))
	log.Info("rolling back on request")

	// The deploy runs to its end even if the caller hangs up; only stopping
	// the service interrupts it.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(s.base, cancel)()
	if err := s.deploy(runCtx, target, env, &d); err != nil {
		if runCtx.Err() == nil {
			return domain.Deployment{}, err
		}
		d.Status, d.Reason, d.EndedAt = domain.DeploymentFailed, domain.InterruptedReason, time.Now().UTC()
		writeCtx, cancelWrite := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancelWrite()
		if err := s.recordManualRollback(writeCtx, target, d, current, hasCurrent); err != nil {
			return domain.Deployment{}, err
		}
		return domain.Deployment{}, fmt.Errorf("rollback of %s to %s: the service is stopping: %w",
			environment, target.Version, apierror.ErrUnavailable)
	}
	if err := s.recordManualRollback(runCtx, target, d, current, hasCurrent); err != nil {
		return domain.Deployment{}, err
	}
	if d.Status == domain.DeploymentVerified {
		log.Info("rolled back")
	} else {
		log.Warn("rollback failed", slog.String("reason", d.Reason))
	}
	return d, nil
}

// rollbackTarget picks the release to roll back to.
func (s *Service) rollbackTarget(ctx context.Context, repository, environment string, want *domain.Version,
	current domain.Deployment, hasCurrent bool) (domain.Release, error) {
	if want == nil {
		if !hasCurrent {
			return domain.Release{}, fmt.Errorf("no verified release runs in %q of %q; name the version to deploy (to_version): %w",
				environment, repository, apierror.ErrFailedPrecondition)
		}
		good, ok, err := s.store.LastGoodDeployment(ctx, repository, environment, current.ReleaseID)
		if err != nil {
			return domain.Release{}, err
		}
		if !ok {
			return domain.Release{}, fmt.Errorf("no release of %q was verified in %q before %s; nothing to roll back to: %w",
				repository, environment, current.Version, apierror.ErrFailedPrecondition)
		}
		return s.releaseOf(ctx, good)
	}
	target, ok, err := s.store.ReleaseByVersion(ctx, repository, *want)
	if err != nil {
		return domain.Release{}, err
	}
	switch {
	case !ok:
		return domain.Release{}, fmt.Errorf("release %s of %q: %w", *want, repository, apierror.ErrNotFound)
	case target.Status == domain.ReleaseBad:
		return domain.Release{}, fmt.Errorf("release %s of %q is bad (a deploy or verification of it failed); pick another version: %w",
			target.Version, repository, apierror.ErrFailedPrecondition)
	case hasCurrent && current.ReleaseID == target.ID:
		return domain.Release{}, fmt.Errorf("%s already runs in %q: %w", target.Version, environment, apierror.ErrFailedPrecondition)
	}
	return target, nil
}

// recordManualRollback stores the end of a manual rollback with its event;
// a verified one marks the deployment it replaced rolled back.
func (s *Service) recordManualRollback(ctx context.Context, target domain.Release, d domain.Deployment, current domain.Deployment, hasCurrent bool) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
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
			if _, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1 WHERE id = $2`,
				string(domain.DeploymentRolledBack), current.ID); err != nil {
				return fmt.Errorf("mark deployment %s rolled back: %w", current.ID, err)
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
	})
}
