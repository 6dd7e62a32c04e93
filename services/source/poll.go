package source

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// Poll fetches every repository now and then every Config.PollInterval
// until ctx ends, starting a run for each new head of a watched branch
// that has no run yet (a head run by hand or by a push is only recorded as
// seen). The module runs it only when PollInterval is positive.
func (s *Service) Poll(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.pollOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pollOnce fetches every repository once, but those whose credential was
// refused lately (refusedPollWait). Failures are logged, a refused
// credential as an error, and the next repository is polled.
func (s *Service) pollOnce(ctx context.Context) {
	repos, err := s.store.Repositories(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("poll: cannot list repositories", slog.Any("error", err))
		}
		return
	}
	for _, repo := range repos {
		if ctx.Err() != nil {
			return
		}
		if !s.refusals.due(repo.ID, time.Now()) {
			continue
		}
		err := s.pollRepository(ctx, repo)
		switch {
		case err == nil || ctx.Err() != nil:
		case gitauth.Refused(err):
			wait := s.refusals.add(repo.ID, time.Now())
			s.log.Error("poll: the repository's credential was refused; it is polled again in "+wait.String()+", or at the next tick once its credential is set (sluice secret set)",
				slog.String("repository", repo.Name), slog.Any("error", err), slog.Duration("next_poll_in", wait))
		default:
			s.log.Warn("poll failed", slog.String("repository", repo.Name), slog.Any("error", err))
		}
	}
}

// refusedPollWait paces the polls of a repository whose credential was
// refused: trying again does not mend it, and a forge may lock out an
// address that keeps failing to authenticate, so such a repository is
// polled after a minute, then two, four, … at most hourly, not at every
// tick, until a fetch of it works again (a trigger, a webhook) or its
// credential is set or removed.
var refusedPollWait = retry.Backoff{Initial: time.Minute, Max: time.Hour}

// pollRefusals are the repositories (by id) whose credential the last
// polls found refused, and when each is due again.
type pollRefusals struct {
	mu     sync.Mutex
	byRepo map[string]pollRefusal
}

type pollRefusal struct {
	times int
	next  time.Time
}

// due reports whether repository id may be polled at now.
func (p *pollRefusals) due(id string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.byRepo[id]
	return !ok || !now.Before(r.next)
}

// add records one more refusal of repository id at now and returns how
// long its polls wait.
func (p *pollRefusals) add(id string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byRepo == nil {
		p.byRepo = map[string]pollRefusal{}
	}
	r := p.byRepo[id]
	r.times++
	wait := refusedPollWait.Delay(r.times)
	r.next = now.Add(wait)
	p.byRepo[id] = r
	return wait
}

// forget makes repository id due at once: it was fetched, or its
// credential changed.
func (p *pollRefusals) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.byRepo, id)
}

func (s *Service) pollRepository(ctx context.Context, repo domain.Repository) error {
	if err := s.fetch(ctx, repo); err != nil {
		return err
	}
	if err := s.reconcilePullRequests(ctx, repo); err != nil && ctx.Err() == nil {
		s.log.Warn("poll: the pull requests of the repository's forge could not be reconciled", slog.String("repository", repo.Name), slog.Any("error", err))
	}
	if err := s.reconcileRefs(ctx, repo); err != nil && ctx.Err() == nil {
		s.log.Warn("poll: the repository's branches and tags could not be reconciled", slog.String("repository", repo.Name), slog.Any("error", err))
	}
	head, err := s.mirrors.BranchHead(repo.ID, repo.Branch)
	if errors.Is(err, gitmirror.ErrNotFound) {
		return nil // no commits yet
	}
	if err != nil {
		return err
	}
	if head == repo.LastSeenCommit {
		return nil
	}
	_, err = s.startRun(ctx, repo, branchHead(repo.Branch, head), domain.TriggerPoll, func(tx *sql.Tx, run domain.Run) error {
		was := repo.LastSeenCommit
		ok, err := setLastSeen(ctx, tx, repo.ID, head, &was)
		if err != nil {
			return err
		}
		if !ok {
			return errSkipRun // a webhook saw it first
		}
		return enqueueChange(ctx, tx, repo, run, domain.TriggerPoll, "")
	})
	if errors.Is(err, errSkipRun) {
		return nil
	}
	if existing := new(existingRun); errors.As(err, &existing) {
		// The head has a run already (a manual trigger or a push made it):
		// record it as seen, so that the next polls do not look again.
		s.log.Debug("poll: the branch head already has a run", slog.String("repository", repo.Name),
			slog.String("commit", head), slog.String("run_id", existing.RunID))
		return s.markSeen(ctx, repo, head)
	}
	if no := new(unwantedRun); errors.As(err, &no) {
		s.log.Debug("poll: the branch head needs no run", slog.String("repository", repo.Name),
			slog.String("commit", head), slog.String("reason", no.Reason))
		return s.markSeen(ctx, repo, head)
	}
	return err
}
