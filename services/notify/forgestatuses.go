package notify

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/forge"
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

// statusQueue is the commit statuses' table as their loop's queue.
type statusQueue struct{ s *Service }

func (q statusQueue) Claim(ctx context.Context, now time.Time, limit int) ([]domain.ForgeStatus, error) {
	return q.s.store.ClaimForgeStatuses(ctx, now, q.s.leaseEnd(now), limit)
}

func (q statusQueue) NextDue(ctx context.Context) (time.Time, error) {
	return q.s.store.NextForgeStatusDue(ctx)
}

func (q statusQueue) Attempt(ctx context.Context, log *slog.Logger, fs domain.ForgeStatus) {
	q.s.setForgeStatus(ctx, log, fs)
}

// DeliverForgeStatuses sets due commit statuses on their forges, up to
// Config.Workers at once, until ctx ends.
func (s *Service) DeliverForgeStatuses(ctx context.Context) error { return s.statuses.Run(ctx) }

// setForgeStatus makes one attempt at fs and records it.
func (s *Service) setForgeStatus(ctx context.Context, log *slog.Logger, fs domain.ForgeStatus) {
	log = log.With(slog.String("repository", fs.Repository), slog.String("commit", fs.Commit), slog.String("context", fs.Context),
		slog.String("state", string(fs.Status.State)), slog.Uint64("sequence", fs.Sequence), slog.String("run_id", fs.RunID),
		slog.Int("attempt", fs.AttemptCount+1))
	s.attemptOnForge(ctx, log, forgeAttempt{
		what: "commit status", done: "commit status set", notDone: "commit status not set",
		queued: fs.CreatedAt, attempts: fs.AttemptCount,
		send: func(ctx context.Context) error { return s.sendForgeStatus(ctx, fs) },
		record: func(ctx context.Context, o forgeOutcome, now time.Time) error {
			return s.store.RecordForgeStatus(ctx, fs, o, now)
		},
	})
}

// forgeAttempt is one attempt at something notify does on a forge (a
// commit status, a release).
type forgeAttempt struct {
	// what it is, and what the log says when it is done and when not.
	what, done, notDone string
	// queued is when it was queued; attempts how many were made before.
	queued   time.Time
	attempts int
	send     func(ctx context.Context) error
	record   func(ctx context.Context, o forgeOutcome, now time.Time) error
}

// attemptOnForge makes attempt a and records its outcome: done; given up
// when the forge rejected it, it cannot be sent, or status-max-age has
// passed since it was queued; else due again after the retry back-off.
// Like a delivery's, it outlives ctx, bounded by the attempt and record
// timeouts.
func (s *Service) attemptOnForge(ctx context.Context, log *slog.Logger, a forgeAttempt) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.AttemptTimeout)
	err := a.send(actx)
	cancel()
	now := time.Now()
	o := forgeOutcome{err: err}
	switch {
	case err == nil:
		log.Info(a.done)
	case errors.Is(err, forge.ErrRejected) || errors.Is(err, forge.ErrInvalid) || now.Sub(a.queued) >= s.cfg.StatusMaxAge:
		log.Error(a.what+" given up", slog.Any("error", err))
	default:
		o.retryAt = now.Add(s.retry.After(a.attempts + 1))
		log.Warn(a.notDone+"; trying again", slog.Any("error", err), slog.Time("retry_at", o.retryAt))
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := a.record(rctx, o, now); err != nil {
		log.Error("recording a "+a.what+" attempt failed; it is tried again when its lease ends", slog.Any("error", err))
	}
}

// sendForgeStatus sets fs on its forge with the repository's token.
func (s *Service) sendForgeStatus(ctx context.Context, fs domain.ForgeStatus) error {
	client, err := s.forgeClient(ctx, fs.RunID, fs.Forge)
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
