package source

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/sqldb"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// Schedules: a pipeline's on.schedule starts runs at the times of cron
// expressions (domain.ParseSchedule), of its branch's head whether it
// changed or not. The schedules are those of the pipeline file at the head
// of the repository's branch, as the mirror has it (a replica without the
// repository's mirror fires none). Each schedule's next
// firing is in the table schedules; a replica that finds it due moves it
// on with a compare-and-set in the transaction that records the run, so a
// firing makes one run however many replicas look. A firing missed while
// no replica ran makes one run when one starts again (not one per missed
// firing). A schedule the file no longer has keeps its row but no longer
// fires.

// scheduleTick is how often the schedule loop looks for due schedules:
// a schedule fires at most this long after its time.
const scheduleTick = 10 * time.Second

// Schedule fires the repositories' due schedules every scheduleTick until
// ctx ends.
func (s *Service) Schedule(ctx context.Context) error {
	t := time.NewTicker(scheduleTick)
	defer t.Stop()
	for {
		s.scheduleOnce(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// scheduleOnce fires what is due at now; failures are logged, and the
// next repository is looked at.
func (s *Service) scheduleOnce(ctx context.Context, now time.Time) {
	repos, err := s.store.Repositories(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("schedules: listing repositories failed", slog.Any("error", err))
		}
		return
	}
	for _, repo := range repos {
		if ctx.Err() != nil {
			return
		}
		if err := s.scheduleRepository(ctx, repo, now); err != nil && ctx.Err() == nil {
			s.log.Warn("schedules: a repository's schedules could not be fired", slog.String("repository", repo.Name), slog.Any("error", err))
		}
	}
}

// scheduleKey names a schedule in the table schedules.
func scheduleKey(sc *sourcev1.Schedule) string { return sc.GetCron() + " @" + sc.GetBranch() }

func (s *Service) scheduleRepository(ctx context.Context, repo domain.Repository, now time.Time) error {
	schedules, err := s.schedulesOf(repo)
	if err != nil {
		return err
	}
	if len(schedules) == 0 {
		return nil
	}
	known, err := s.store.Schedules(ctx, repo.ID)
	if err != nil {
		return err
	}
	var errs []error
	for _, sc := range schedules {
		key := scheduleKey(sc)
		due, ok := known[key]
		if !ok {
			// Seen for the first time: it fires at its next time.
			errs = append(errs, s.store.AddSchedule(ctx, repo.ID, key, domain.NextFire(sc.GetCron(), now)))
			continue
		}
		if now.Before(due) {
			continue
		}
		if err := s.fire(ctx, repo, sc, key, due, now); err != nil {
			errs = append(errs, fmt.Errorf("schedule %q: %w", sc.GetCron(), err))
		}
	}
	// A schedule the file no longer has keeps its row, not fired: another
	// replica's mirror may not have the change yet and still see it. Put
	// back, it fires once at once when its time passed meanwhile.
	return errors.Join(errs...)
}

// fire runs the head of sc's branch for its firing due, and moves the
// schedule on to its next time after now: one replica does both.
func (s *Service) fire(ctx context.Context, repo domain.Repository, sc *sourcev1.Schedule, key string, due, now time.Time) error {
	next := domain.NextFire(sc.GetCron(), now)
	branch := cmp.Or(sc.GetBranch(), repo.Branch)
	// The head as the mirror has it (the poll and the webhooks keep it
	// fresh): a fetch here would hold up every other schedule and call a
	// forge that may be refusing the credential every tick.
	head, err := s.mirrors.BranchHead(repo.ID, branch)
	if errors.Is(err, gitmirror.ErrNotFound) {
		s.log.Warn("schedules: the schedule's branch has no commits; it fires again at its next time", slog.String("repository", repo.Name),
			slog.String("schedule", sc.GetCron()), slog.String("branch", branch), slog.Time("next", next))
		_, err := s.store.MoveSchedule(ctx, repo.ID, key, due, next)
		return err
	}
	if err != nil {
		return err
	}
	run, err := s.startRun(ctx, repo, branchHead(branch, head), domain.TriggerSchedule, func(tx *sql.Tx, _ domain.Run) error {
		ok, err := moveSchedule(ctx, tx, repo.ID, key, due, next)
		if err == nil && !ok {
			return errSkipRun // another replica fired it
		}
		return err
	}, func(run *domain.Run) {
		// The run holds the pipelines that have the schedule; should the
		// head have none (it moved since the schedule was read), all.
		reason, err := narrow(run, func(n domain.NamedPipeline) string {
			if slices.ContainsFunc(n.Pipeline.GetOn().GetSchedules(), func(o *sourcev1.Schedule) bool { return scheduleKey(o) == key }) {
				return ""
			}
			return "no such schedule"
		})
		if err != nil || reason != "" {
			s.log.Warn("schedules: no pipeline at the head has the schedule; the run holds them all", slog.String("repository", repo.Name),
				slog.String("schedule", key), slog.String("reason", reason), slog.Any("error", err))
		}
	})
	if errors.Is(err, errSkipRun) {
		return nil
	}
	if err != nil {
		return err
	}
	s.log.Info("schedule fired", slog.String("repository", repo.Name), slog.String("schedule", sc.GetCron()),
		slog.String("branch", branch), slog.String("run_id", run.ID), slog.Time("next", next))
	return nil
}

// scheduleCache keeps the schedules of each repository's pipeline by the
// commit they were read at, so that a tick reads a file only when its
// branch moved.
type scheduleCache struct {
	mu     sync.Mutex
	byRepo map[string]cachedSchedules
}

type cachedSchedules struct {
	commit    string
	schedules []*sourcev1.Schedule
}

// schedulesOf are the schedules of the pipeline file at the head of the
// repository's branch in the mirror; none when there is no head, no file
// or an invalid one (its runs say what is wrong).
func (s *Service) schedulesOf(repo domain.Repository) ([]*sourcev1.Schedule, error) {
	head, err := s.mirrors.BranchHead(repo.ID, repo.Branch)
	if errors.Is(err, gitmirror.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.scheduleCache.mu.Lock()
	defer s.scheduleCache.mu.Unlock()
	if c, ok := s.scheduleCache.byRepo[repo.ID]; ok && c.commit == head {
		return c.schedules, nil
	}
	// While a file is too large or invalid, or there are too many, no
	// schedule fires, as no push runs: the runs say what is wrong. The same
	// schedule in two files is one.
	var schedules []*sourcev1.Schedule
	named, _, err := s.pipelinesAt(repo.ID, head)
	if err != nil {
		return nil, err
	}
	for _, n := range named {
		for _, sc := range n.Pipeline.GetOn().GetSchedules() {
			if !slices.ContainsFunc(schedules, func(o *sourcev1.Schedule) bool { return scheduleKey(o) == scheduleKey(sc) }) {
				schedules = append(schedules, sc)
			}
		}
	}
	if s.scheduleCache.byRepo == nil {
		s.scheduleCache.byRepo = map[string]cachedSchedules{}
	}
	s.scheduleCache.byRepo[repo.ID] = cachedSchedules{commit: head, schedules: schedules}
	return schedules, nil
}

// --- the table schedules ---

// Schedules are the next firings of a repository's schedules, by key.
func (s *Store) Schedules(ctx context.Context, repoID string) (map[string]time.Time, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT schedule, next_fire FROM schedules WHERE repository_id = $1`, repoID)
	if err != nil {
		return nil, fmt.Errorf("read the schedules: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var key string
		var next int64
		if err := rows.Scan(&key, &next); err != nil {
			return nil, fmt.Errorf("read the schedules: %w", err)
		}
		out[key] = sqldb.Time(next)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the schedules: %w", err)
	}
	return out, nil
}

// AddSchedule records a schedule first seen, firing next; one another
// replica recorded first is left as it is.
func (s *Store) AddSchedule(ctx context.Context, repoID, key string, next time.Time) error {
	if next.IsZero() {
		return fmt.Errorf("schedule %q never fires: %w", key, apierror.ErrInvalidArgument)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO schedules (repository_id, schedule, next_fire) VALUES ($1, $2, $3)
		ON CONFLICT (repository_id, schedule) DO NOTHING`, repoID, key, sqldb.Nanos(next))
	if err != nil {
		return fmt.Errorf("record schedule %q: %w", key, err)
	}
	return nil
}

// MoveSchedule moves a schedule due at due on to next, unless another
// replica did; ok says this call did.
func (s *Store) MoveSchedule(ctx context.Context, repoID, key string, due, next time.Time) (ok bool, err error) {
	err = s.InTx(ctx, func(tx *sql.Tx) error {
		ok, err = moveSchedule(ctx, tx, repoID, key, due, next)
		return err
	})
	return ok, err
}

func moveSchedule(ctx context.Context, tx *sql.Tx, repoID, key string, due, next time.Time) (bool, error) {
	if next.IsZero() {
		return false, fmt.Errorf("schedule %q never fires again: %w", key, apierror.ErrInvalidArgument)
	}
	res, err := tx.ExecContext(ctx, `UPDATE schedules SET next_fire = $1 WHERE repository_id = $2 AND schedule = $3 AND next_fire = $4`,
		sqldb.Nanos(next), repoID, key, sqldb.Nanos(due))
	if err != nil {
		return false, fmt.Errorf("move schedule %q on: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("move schedule %q on: %w", key, err)
	}
	return n == 1, nil
}
