package source

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/platform/events"
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

// pollOnce fetches every repository once. Failures are logged and the
// next repository is polled.
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
		if err := s.pollRepository(ctx, repo); err != nil && ctx.Err() == nil {
			s.log.Warn("poll failed", slog.String("repository", repo.Name), slog.Any("error", err))
		}
	}
}

func (s *Service) pollRepository(ctx context.Context, repo domain.Repository) error {
	if err := s.fetch(ctx, repo); err != nil {
		return err
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
		ev, err := events.New(changeReceivedToProto(repo, run, domain.TriggerPoll, ""), run.Commit, run.ID)
		if err != nil {
			return err
		}
		return events.Enqueue(ctx, tx, ev)
	})
	if errors.Is(err, errSkipRun) {
		return nil
	}
	if existing := new(existingRun); errors.As(err, &existing) {
		// The head has a run already (a manual trigger or a push made it):
		// record it as seen, so that the next polls do not look again.
		s.log.Debug("poll: the branch head already has a run", slog.String("repository", repo.Name),
			slog.String("commit", head), slog.String("run_id", existing.RunID))
		return s.store.InTx(ctx, func(tx *sql.Tx) error {
			was := repo.LastSeenCommit
			_, err := setLastSeen(ctx, tx, repo.ID, head, &was)
			return err
		})
	}
	return err
}
