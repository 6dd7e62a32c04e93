package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// Commit statuses: source publishes what a run's commit status on its
// forge should say (CommitStatusChanged); notify keeps the latest of each
// repository, commit and context (forgestatus_store.go) and sets it on the
// forge through the forge's client (platform/forge), with the repository's
// forge token, which source gives notify for the run (ResolveSecrets). A
// forge that is down, or a token that is missing or refused, gets the
// status later: it is tried again, backing off to retry-max, until
// status-max-age has passed since it was queued. A newer status of the
// same context replaces one not yet set, and is never sent before an
// attempt at an older one has ended, so a late "pending" never overwrites
// "success". Every request goes through the egress policy, as deliveries
// do.

// forgeStatusOf is the commit status ev asks notify to set; nil for every
// other event.
func forgeStatusOf(ev events.Event) *domain.ForgeStatus {
	p, ok := ev.Payload.(*sourceeventsv1.CommitStatusChanged)
	if !ok {
		return nil
	}
	return &domain.ForgeStatus{
		RepositoryID: p.GetRepository().GetId(),
		Repository:   p.GetRepository().GetName(),
		Commit:       p.GetCommit(),
		Context:      p.GetContext(),
		Sequence:     p.GetSequence(),
		RunID:        p.GetRunId(),
		Forge:        forge.RepoFromProto(p.GetForge()),
		Status: forge.Status{Context: p.GetContext(), State: forge.StateFromProto(p.GetState()),
			Description: p.GetDescription(), TargetURL: p.GetTargetUrl()},
	}
}

// wakeForgeStatuses wakes the commit status loop: one is due.
func (s *Service) wakeForgeStatuses() {
	select {
	case s.statusDue <- struct{}{}:
	default:
	}
}

// DeliverForgeStatuses sets due commit statuses on their forges, up to
// Config.Workers at once, until ctx ends.
func (s *Service) DeliverForgeStatuses(ctx context.Context) error {
	log := s.log.With(slog.String("component", "commit statuses"))
	for {
		wait := idlePoll
		now := time.Now()
		claimed, err := s.store.ClaimForgeStatuses(ctx, now, now.Add(s.cfg.AttemptTimeout+leaseMargin), s.cfg.Workers)
		if err != nil && ctx.Err() == nil {
			log.Warn("taking due commit statuses failed; retrying", slog.Any("error", err))
		}
		var wg sync.WaitGroup
		for _, fs := range claimed {
			wg.Go(func() {
				// A panic leaves the status leased: it is tried again when
				// the lease ends.
				s.sup.Guard("commit status", func() { s.setForgeStatus(ctx, log, fs) })
			})
		}
		wg.Wait()
		if len(claimed) > 0 {
			continue
		}
		next, err := s.store.NextForgeStatusDue(ctx)
		switch {
		case err == nil:
			wait = min(wait, max(time.Until(next), 10*time.Millisecond))
		case !errors.Is(err, apierror.ErrNotFound) && ctx.Err() == nil:
			log.Warn("finding the next due commit status failed", slog.Any("error", err))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.statusDue:
			t.Stop()
		case <-t.C:
		}
	}
}

// setForgeStatus makes one attempt at fs and records it. Like a
// delivery's, it outlives ctx, bounded by the attempt and record timeouts.
func (s *Service) setForgeStatus(ctx context.Context, log *slog.Logger, fs domain.ForgeStatus) {
	log = log.With(slog.String("repository", fs.Repository), slog.String("commit", fs.Commit), slog.String("context", fs.Context),
		slog.String("state", string(fs.Status.State)), slog.Uint64("sequence", fs.Sequence), slog.String("run_id", fs.RunID),
		slog.Int("attempt", fs.AttemptCount+1))
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.AttemptTimeout)
	err := s.sendForgeStatus(actx, fs)
	cancel()
	now := time.Now()
	o := forgeStatusOutcome{err: err}
	switch {
	case err == nil:
		log.Info("commit status set")
	case errors.Is(err, forge.ErrRejected) || errors.Is(err, forge.ErrInvalid) || now.Sub(fs.CreatedAt) >= s.cfg.StatusMaxAge:
		log.Error("commit status given up", slog.Any("error", err))
	default:
		o.retryAt = now.Add(s.retry.After(fs.AttemptCount + 1))
		log.Warn("commit status not set; trying again", slog.Any("error", err), slog.Time("retry_at", o.retryAt))
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := s.store.RecordForgeStatus(rctx, fs, o, now); err != nil {
		log.Error("recording a commit status attempt failed; it is tried again when its lease ends", slog.Any("error", err))
	}
}

// sendForgeStatus sets fs on its forge with the repository's token.
func (s *Service) sendForgeStatus(ctx context.Context, fs domain.ForgeStatus) error {
	token, err := s.secrets.ForgeToken(ctx, fs.RunID)
	if err != nil {
		if errors.Is(err, stepsecrets.ErrUnresolvable) {
			// No token yet: the operator may set one; it is tried again.
			return fmt.Errorf("the repository's forge token: %w", err)
		}
		return fmt.Errorf("ask source for the repository's forge token: %w", err)
	}
	client, err := forge.NewClient(fs.Forge, token, s.client)
	if err != nil {
		return err
	}
	st := fs.Status
	st.TargetURL = s.runURL(fs)
	if err := client.SetStatus(ctx, fs.Commit, st); err != nil {
		return egress.Brief(err)
	}
	return nil
}

// runURL is the run's page, from the run-url setting ("" without one).
func (s *Service) runURL(fs domain.ForgeStatus) string {
	if s.cfg.RunURL == "" {
		return ""
	}
	return strings.NewReplacer("{run}", fs.RunID, "{repository}", fs.Repository, "{commit}", fs.Commit).Replace(s.cfg.RunURL)
}
