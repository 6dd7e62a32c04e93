package tests

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/services/tests/domain"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the test service's tables.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("test", migrationFiles)
}

// Store keeps test runs, suites and cases (and, in the same database, the
// outbox, processed events and step logs).
type Store struct {
	db *sqldb.DB
}

// NewStore keeps the service's records in db, which has the Migrations
// (servicekit opens and migrates it on start).
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

// ClaimOutcome says what a worker may do with a BuildFinished event.
type ClaimOutcome int

// Claim outcomes.
const (
	// Claimed: a new test run; the worker runs it.
	Claimed ClaimOutcome = iota + 1
	// TakenOver: the test run was RUNNING without a live worker; this
	// worker runs it again with the next attempt number.
	TakenOver
	// AlreadyEnded: the test run ended; nothing to do.
	AlreadyEnded
	// HeldByOther: a live worker runs the test run for another event (a
	// duplicate BuildFinished); nothing to do.
	HeldByOther
	// HeldForThisEvent: a live worker runs the test run for this very event
	// (its lease on the message lapsed); wait for it.
	HeldForThisEvent
)

func (o ClaimOutcome) String() string {
	switch o {
	case Claimed:
		return "Claimed"
	case TakenOver:
		return "TakenOver"
	case AlreadyEnded:
		return "AlreadyEnded"
	case HeldByOther:
		return "HeldByOther"
	case HeldForThisEvent:
		return "HeldForThisEvent"
	}
	return fmt.Sprintf("ClaimOutcome(%d)", int(o))
}

const runColumns = `id, run_id, build_id, repository_id, repository_name, repository_url, commit_sha, branch,
	status, attempt, passed, failed, skipped, failure_reason, failed_step, exit_code, created_at, started_at, ended_at,
	repository_git_credential`

type rowScanner interface{ Scan(dest ...any) error }

func scanRun(row rowScanner, extra ...any) (domain.TestRun, error) {
	var r domain.TestRun
	var created, started, ended int64
	dest := []any{&r.ID, &r.RunID, &r.BuildID, &r.Repository.ID, &r.Repository.Name, &r.Repository.URL, &r.Commit, &r.Branch,
		&r.Status, &r.Attempt, &r.Counts.Passed, &r.Counts.Failed, &r.Counts.Skipped, &r.FailureReason, &r.FailedStep, &r.ExitCode,
		&created, &started, &ended, &r.Repository.GitCredential}
	err := row.Scan(append(dest, extra...)...)
	r.CreatedAt, r.StartedAt, r.EndedAt = sqldb.Time(created), sqldb.Time(started), sqldb.Time(ended)
	return r, err
}

// Claim records candidate as RUNNING for eventID, with its steps, and
// enqueues started in the same transaction, unless the run already has a
// test run: then it
// takes over one whose worker's lease ended before now (attempt+1), or
// reports why not. leaseUntil is the new lease's end.
func (s *Store) Claim(ctx context.Context, candidate domain.TestRun, eventID string, started events.Event, now, leaseUntil time.Time) (domain.TestRun, ClaimOutcome, error) {
	var run domain.TestRun
	var outcome ClaimOutcome
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO test_runs (id, run_id, build_id, repository_id, repository_name, repository_url,
			commit_sha, branch, status, attempt, owner_event, lease_until, created_at, started_at, repository_git_credential)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $12, $12, $13) ON CONFLICT (run_id) DO NOTHING`,
			candidate.ID, candidate.RunID, candidate.BuildID, candidate.Repository.ID, candidate.Repository.Name, candidate.Repository.URL,
			candidate.Commit, candidate.Branch, domain.StatusRunning, eventID, sqldb.Nanos(leaseUntil), sqldb.Nanos(now), int(candidate.Repository.GitCredential))
		if err != nil {
			return fmt.Errorf("insert test run of run %s: %w", candidate.RunID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("insert test run of run %s: %w", candidate.RunID, err)
		} else if n == 1 {
			run, outcome = candidate, Claimed
			run.Status, run.Attempt, run.CreatedAt, run.StartedAt = domain.StatusRunning, 1, now.UTC(), now.UTC()
			if err := insertSteps(ctx, tx, candidate.ID, candidate.Steps); err != nil {
				return err
			}
			return events.Enqueue(ctx, tx, started)
		}

		var owner string
		var lease int64
		row := tx.QueryRowContext(ctx, `SELECT `+runColumns+`, owner_event, lease_until FROM test_runs WHERE run_id = $1`, candidate.RunID)
		existing, err := scanRun(row, &owner, &lease)
		if err != nil {
			return fmt.Errorf("read test run of run %s: %w", candidate.RunID, err)
		}
		run = existing
		switch {
		case existing.Status.Ended():
			outcome = AlreadyEnded
			return nil
		case lease > sqldb.Nanos(now):
			outcome = HeldByOther
			if owner == eventID {
				outcome = HeldForThisEvent
			}
			return nil
		}
		res, err = tx.ExecContext(ctx, `UPDATE test_runs SET attempt = attempt + 1, owner_event = $1, lease_until = $2, started_at = $3
			WHERE id = $4 AND attempt = $5 AND status = $6`,
			eventID, sqldb.Nanos(leaseUntil), sqldb.Nanos(now), existing.ID, existing.Attempt, domain.StatusRunning)
		if err != nil {
			return fmt.Errorf("take over test run %s: %w", existing.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("take over test run %s: %w", existing.ID, err)
		} else if n != 1 {
			outcome = HeldByOther
			return nil
		}
		run.Attempt++
		run.StartedAt = now.UTC()
		outcome = TakenOver
		return nil
	})
	if err != nil {
		return domain.TestRun{}, 0, err
	}
	return run, outcome, nil
}

func insertSteps(ctx context.Context, tx *sql.Tx, testRunID string, steps []domain.Step) error {
	for i, st := range steps {
		if _, err := tx.ExecContext(ctx, `INSERT INTO test_steps (test_run_id, position, name, status, exit_code, duration_ns, tries, reason)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, testRunID, i, st.Name, st.Status, st.ExitCode, int64(st.Duration), st.Tries, st.Reason); err != nil {
			return fmt.Errorf("store step %q of test run %s: %w", st.Name, testRunID, err)
		}
	}
	return nil
}

// RenewLease extends the lease of the worker running attempt of the test
// run; lease.ErrLost when that attempt is no longer current.
func (s *Store) RenewLease(ctx context.Context, id string, attempt int, until time.Time) error {
	return s.updateLease(ctx, id, attempt, sqldb.Nanos(until))
}

// ReleaseLease gives the test run up so that the event's next delivery
// takes it over at once.
func (s *Store) ReleaseLease(ctx context.Context, id string, attempt int) error {
	return s.updateLease(ctx, id, attempt, 0)
}

func (s *Store) updateLease(ctx context.Context, id string, attempt int, until int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE test_runs SET lease_until = $1 WHERE id = $2 AND attempt = $3 AND status = $4`,
		until, id, attempt, domain.StatusRunning)
	if err != nil {
		return fmt.Errorf("update lease of test run %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("update lease of test run %s: %w", id, err)
	}
	if n != 1 {
		return fmt.Errorf("test run %s attempt %d: %w", id, attempt, lease.ErrLost)
	}
	return nil
}

// Finish records the outcome of attempt, its steps (as they ended), suites
// and cases, and enqueues the case events, then finished, in one
// transaction. It fails with lease.ErrLost when the attempt is no longer
// the current one.
func (s *Store) Finish(ctx context.Context, run domain.TestRun, o domain.Outcome, steps []domain.Step, endedAt time.Time, finished events.Event, cases ...events.Event) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		counts := o.Counts()
		failedStep, exitCode := "", 0
		if o.FailedStep != nil {
			failedStep, exitCode = o.FailedStep.Name, o.FailedStep.ExitCode
		}
		res, err := tx.ExecContext(ctx, `UPDATE test_runs SET status = $1, passed = $2, failed = $3, skipped = $4,
			failure_reason = $5, failed_step = $6, exit_code = $7, ended_at = $8, lease_until = 0
			WHERE id = $9 AND attempt = $10 AND status = $11`,
			o.Status, counts.Passed, counts.Failed, counts.Skipped, sqldb.Text(o.Reason), failedStep, exitCode, sqldb.Nanos(endedAt),
			run.ID, run.Attempt, domain.StatusRunning)
		if err != nil {
			return fmt.Errorf("finish test run %s: %w", run.ID, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("finish test run %s: %w", run.ID, err)
		} else if n != 1 {
			return fmt.Errorf("finish test run %s attempt %d: %w", run.ID, run.Attempt, lease.ErrLost)
		}
		// With the event that says the test run ended: whoever learns of
		// the end finds the log complete.
		if err := steplog.CompleteIn(ctx, tx, run.RunID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM test_steps WHERE test_run_id = $1`, run.ID); err != nil {
			return fmt.Errorf("store steps of test run %s: %w", run.ID, err)
		}
		if err := insertSteps(ctx, tx, run.ID, steps); err != nil {
			return err
		}
		for i, su := range o.Suites {
			if _, err := tx.ExecContext(ctx, `INSERT INTO test_suites (test_run_id, position, name, passed, failed, skipped, duration_ns)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				run.ID, i, su.Name, su.Counts.Passed, su.Counts.Failed, su.Counts.Skipped, int64(su.Duration)); err != nil {
				return fmt.Errorf("store suite %q of test run %s: %w", su.Name, run.ID, err)
			}
		}
		for i, c := range o.Cases {
			if _, err := tx.ExecContext(ctx, `INSERT INTO test_cases (test_run_id, position, suite, name, status, duration_ns, output)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				run.ID, i, sqldb.Text(c.Suite), sqldb.Text(c.Name), c.Status, int64(c.Duration), sqldb.Text(c.Output)); err != nil {
				return fmt.Errorf("store case %q of test run %s: %w", c.Name, run.ID, err)
			}
		}
		for _, ev := range cases {
			if err := events.Enqueue(ctx, tx, ev); err != nil {
				return err
			}
		}
		return events.Enqueue(ctx, tx, finished)
	})
}

// TestRun returns the test run with the given id, or the test run of the
// run with that id.
func (s *Store) TestRun(ctx context.Context, id string) (domain.TestRun, error) {
	return s.oneRun(ctx, `SELECT `+runColumns+` FROM test_runs WHERE id = $1 OR run_id = $1
		ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1`, id, "no test run with id or run id "+id)
}

// TestRunOfRun returns the test run of the run runID.
func (s *Store) TestRunOfRun(ctx context.Context, runID string) (domain.TestRun, error) {
	return s.oneRun(ctx, `SELECT `+runColumns+` FROM test_runs WHERE run_id = $1`, runID, "no test run for run "+runID)
}

func (s *Store) oneRun(ctx context.Context, query, id, notFound string) (domain.TestRun, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return domain.TestRun{}, fmt.Errorf("%s: %w", notFound, apierror.ErrNotFound)
	}
	if err != nil {
		return domain.TestRun{}, fmt.Errorf("read test run %q: %w", id, err)
	}
	return r, nil
}

// Steps returns the test run's steps in pipeline order.
func (s *Store) Steps(ctx context.Context, testRunID string) ([]domain.Step, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, status, exit_code, duration_ns, tries, reason FROM test_steps
		WHERE test_run_id = $1 ORDER BY position`, testRunID)
	if err != nil {
		return nil, fmt.Errorf("read steps of test run %s: %w", testRunID, err)
	}
	defer rows.Close()
	var out []domain.Step
	for rows.Next() {
		var st domain.Step
		var d int64
		if err := rows.Scan(&st.Name, &st.Status, &st.ExitCode, &d, &st.Tries, &st.Reason); err != nil {
			return nil, fmt.Errorf("read steps of test run %s: %w", testRunID, err)
		}
		st.Duration = time.Duration(d)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read steps of test run %s: %w", testRunID, err)
	}
	return out, nil
}

// Suites returns the test run's suites in report order.
func (s *Store) Suites(ctx context.Context, testRunID string) ([]domain.Suite, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, passed, failed, skipped, duration_ns FROM test_suites
		WHERE test_run_id = $1 ORDER BY position`, testRunID)
	if err != nil {
		return nil, fmt.Errorf("read suites of test run %s: %w", testRunID, err)
	}
	defer rows.Close()
	var out []domain.Suite
	for rows.Next() {
		var su domain.Suite
		var d int64
		if err := rows.Scan(&su.Name, &su.Counts.Passed, &su.Counts.Failed, &su.Counts.Skipped, &d); err != nil {
			return nil, fmt.Errorf("read suites of test run %s: %w", testRunID, err)
		}
		su.Duration = time.Duration(d)
		out = append(out, su)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read suites of test run %s: %w", testRunID, err)
	}
	return out, nil
}

// Cases returns the test run's cases of page in report order, only those
// with status when status is not 0: page.Limit() of them at most, so that
// the caller sees whether more follow (paging.Cut). The page's cursor is
// (position, testRunID).
func (s *Store) Cases(ctx context.Context, testRunID string, status domain.CaseStatus, page paging.Page) ([]domain.Case, error) {
	after, args := page.Where("position", "test_run_id", false, 4)
	rows, err := s.db.QueryContext(ctx, `SELECT position, suite, name, status, duration_ns, output FROM test_cases
		WHERE test_run_id = $1 AND ($2 = 0 OR status = $2) AND `+after+` ORDER BY position LIMIT $3`,
		append([]any{testRunID, status, page.Limit()}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("read cases of test run %s: %w", testRunID, err)
	}
	defer rows.Close()
	var out []domain.Case
	for rows.Next() {
		var c domain.Case
		var d int64
		if err := rows.Scan(&c.Position, &c.Suite, &c.Name, &c.Status, &d, &c.Output); err != nil {
			return nil, fmt.Errorf("read cases of test run %s: %w", testRunID, err)
		}
		c.Duration = time.Duration(d)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read cases of test run %s: %w", testRunID, err)
	}
	return out, nil
}
