package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// Releases on the forges: source publishes a ForgeReleaseRequested for a
// release of a repository that makes its releases on its forge; notify
// records it (forgerelease_store.go) and makes the git tag and the forge's
// release through the forge's client (platform/forge), with the
// repository's forge token, which source gives notify for the run. A
// release of the tag that is there already counts as made, so an attempt
// whose answer was lost is harmless when tried again. A forge that is down,
// or a token that is missing or refused, gets the release later, backing
// off to retry-max, until status-max-age has passed since it was queued.
// Every request goes through the egress policy, as deliveries do.

// forgeReleaseOf is the release ev asks notify to make on a forge; nil for
// every other event.
func forgeReleaseOf(ev events.Event) *domain.ForgeRelease {
	p, ok := ev.Payload.(*sourceeventsv1.ForgeReleaseRequested)
	if !ok {
		return nil
	}
	return &domain.ForgeRelease{
		ReleaseID:    p.GetReleaseId(),
		RepositoryID: p.GetRepository().GetId(),
		Repository:   p.GetRepository().GetName(),
		RunID:        p.GetRunId(),
		Forge:        forge.RepoFromProto(p.GetForge()),
		Version:      p.GetVersion(),
		Release:      forge.Release{Tag: p.GetTag(), Commit: p.GetCommit(), Name: p.GetVersion(), Notes: p.GetChangelog()},
	}
}

// releaseQueue is the forge releases' table as their loop's queue.
type releaseQueue struct{ s *Service }

func (q releaseQueue) Claim(ctx context.Context, now time.Time, limit int) ([]domain.ForgeRelease, error) {
	return q.s.store.ClaimForgeReleases(ctx, now, q.s.leaseEnd(now), limit)
}

func (q releaseQueue) NextDue(ctx context.Context) (time.Time, error) {
	return q.s.store.NextForgeReleaseDue(ctx)
}

func (q releaseQueue) Attempt(ctx context.Context, log *slog.Logger, fr domain.ForgeRelease) {
	q.s.makeForgeRelease(ctx, log, fr)
}

// MakeForgeReleases makes due releases on their forges, up to
// Config.Workers at once, until ctx ends.
func (s *Service) MakeForgeReleases(ctx context.Context) error { return s.releases.Run(ctx) }

// makeForgeRelease makes one attempt at fr and records it.
func (s *Service) makeForgeRelease(ctx context.Context, log *slog.Logger, fr domain.ForgeRelease) {
	log = log.With(slog.String("repository", fr.Repository), slog.String("version", fr.Version), slog.String("tag", fr.Release.Tag),
		slog.String("release_id", fr.ReleaseID), slog.String("run_id", fr.RunID), slog.Int("attempt", fr.AttemptCount+1))
	s.attemptOnForge(ctx, log, forgeAttempt{
		what: "release on the forge", done: "release made on the forge", notDone: "release not made on the forge",
		queued: fr.CreatedAt, attempts: fr.AttemptCount,
		send: func(ctx context.Context) error { return s.sendForgeRelease(ctx, fr) },
		record: func(ctx context.Context, o forgeOutcome, now time.Time) error {
			return s.store.RecordForgeRelease(ctx, fr, o, now)
		},
	})
}

// sendForgeRelease makes fr on its forge with the repository's token.
func (s *Service) sendForgeRelease(ctx context.Context, fr domain.ForgeRelease) error {
	client, err := s.forgeClient(ctx, fr.RunID, fr.Forge)
	if err != nil {
		return err
	}
	if err := client.CreateRelease(ctx, fr.Release); err != nil {
		return egress.Brief(err)
	}
	return nil
}

// forgeClient is a client of place's API with the forge token of the
// repository of run.
func (s *Service) forgeClient(ctx context.Context, run string, place forge.Repo) (forge.Client, error) {
	token, err := s.secrets.ForgeToken(ctx, run)
	if err != nil {
		if errors.Is(err, stepsecrets.ErrUnresolvable) {
			// No token yet: the operator may set one; it is tried again.
			return nil, fmt.Errorf("the repository's forge token: %w", err)
		}
		return nil, fmt.Errorf("ask source for the repository's forge token: %w", err)
	}
	return forge.NewClient(place, token, s.client)
}
