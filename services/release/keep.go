package release

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/release/domain"
)

// KeptBucket is the JetStream object store in which release keeps a copy
// of each release's artifacts, <run-id>/<artifact-name> as the build named
// them (deploy/nats/objectstores declares it; release owns it). Unlike the
// build's store (artifacts.Bucket, 30 days), it does not expire: release
// prunes it (pruneArtifacts), so that a rollback finds the artifacts of
// every release it may go back to.
const KeptBucket = "sluice-release-artifacts"

const (
	// keepNewReleases is how long a release keeps its artifacts whatever
	// else: one not deployed anywhere yet may still be.
	keepNewReleases = 7 * 24 * time.Hour
	// pruneBatch is how many releases, or objects, a statement of
	// pruneArtifacts takes at a time.
	pruneBatch = 1000
)

// keepArtifacts copies the build's artifacts of the run st into KeptBucket
// and returns them with their copies' names (KeptObject), before the
// release that records them is made. An error is the stores' (or ctx's):
// the delivery fails and the next one copies again (an object copied
// already is kept as it is). An artifact that cannot be copied for good
// (not in the build's store, not what the build recorded) is recorded
// without a copy: the deploys fetch the build's object and fail as they
// did before release kept copies, saying why.
func (s *Service) keepArtifacts(ctx context.Context, st stage, arts []domain.Artifact) ([]domain.Artifact, error) {
	if len(arts) == 0 {
		return arts, nil
	}
	from, err := artifacts.Open(ctx, s.js)
	if err != nil {
		return nil, err
	}
	to, err := artifacts.OpenBucket(ctx, s.js, KeptBucket)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(arts)
	for i, a := range out {
		kept, err := from.Copy(ctx, buildArtifact(a), to, artifacts.ObjectName(st.runID, a.Name),
			fmt.Sprintf("artifact %s of run %s of %s", a.Name, st.runID, st.repo.Name))
		switch {
		case artifacts.Permanent(err):
			st.log.Warn("artifact not kept: the deploys of the release will fail", slog.String("artifact", a.Name), slog.Any("error", err))
		case err != nil:
			return nil, fmt.Errorf("keep the artifacts of run %s: %w", st.runID, err)
		default:
			out[i].KeptObject = kept.Object
		}
	}
	return out, nil
}

// buildArtifact is a as the build stored it.
func buildArtifact(a domain.Artifact) artifacts.Artifact {
	return artifacts.Artifact{Name: a.Name, Object: a.Object, SHA256: a.SHA256, Size: a.Size, Format: a.Format}
}

// prunedError says that rel cannot be deployed any more: its kept
// artifacts were deleted.
func (s *Service) prunedError(rel domain.Release) error {
	return fmt.Errorf("release %s of %q can no longer be deployed: its artifacts were deleted on %s, as it was neither deployed nor one of the last verified releases of an environment that the release service keeps (its keep-releases setting, $SLUICE_RELEASE_KEEP_RELEASES, now %d); pick a newer version",
		rel.Version, rel.Repository.Name, rel.PrunedAt.Format(time.DateTime+" MST"), s.cfg.KeepReleases)
}

// pruneArtifacts gives up the kept artifacts of the releases that no deploy
// or rollback needs any more (Store.markPruned says which) as of now: it
// marks them pruned, then deletes their objects from KeptBucket. It
// returns how many releases it marked and how many objects it deleted.
// Marking comes first, so that no deploy starts fetching an object being
// deleted (fetchArtifacts reads the mark), and the objects of a release
// marked before are deleted by the next call if a deletion failed. Two
// replicas may prune at once: each release is marked once, and deleting
// an object that is gone is no error.
func (s *Service) pruneArtifacts(ctx context.Context, now time.Time) (releases, objects int, err error) {
	for {
		marked, err := s.store.markPruned(ctx, s.cfg.KeepReleases, now.Add(-keepNewReleases), now, pruneBatch)
		if err != nil {
			return releases, objects, err
		}
		for _, r := range marked {
			s.log.Info("release artifacts pruned: the release can no longer be rolled back to",
				slog.String("repository", r.Repository), slog.String("version", r.Version), slog.Int("keep_releases", s.cfg.KeepReleases))
		}
		releases += len(marked)
		if len(marked) < pruneBatch {
			break
		}
	}
	var store *artifacts.Store
	for {
		kept, err := s.store.prunedObjects(ctx, pruneBatch)
		if err != nil || len(kept) == 0 {
			return releases, objects, err
		}
		if store == nil {
			if store, err = artifacts.OpenBucket(ctx, s.js, KeptBucket); err != nil {
				return releases, objects, err
			}
		}
		for _, o := range kept {
			if err := store.Delete(ctx, o.Object); err != nil {
				return releases, objects, err
			}
			if err := s.store.forgetKeptObject(ctx, o); err != nil {
				return releases, objects, err
			}
			objects++
		}
		if len(kept) < pruneBatch {
			return releases, objects, nil
		}
	}
}

// pruneLoop prunes the kept artifacts at start and then every
// servicekit.PruneEvery, as the services prune their expired records. A
// failure is logged and tried again at the next interval: the objects
// only take room meanwhile.
func (s *Service) pruneLoop(ctx context.Context) error {
	for {
		releases, objects, err := s.pruneArtifacts(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("pruning release artifacts failed; trying again later", slog.Any("error", err), slog.Duration("in", servicekit.PruneEvery))
		case err == nil && (releases > 0 || objects > 0):
			s.log.Info("pruned release artifacts", slog.String("bucket", KeptBucket), slog.Int("releases", releases), slog.Int("objects", objects))
		}
		if !retry.Sleep(ctx, servicekit.PruneEvery) {
			return nil
		}
	}
}
