package build

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
	"github.com/sluicehq/sluice/services/build/domain"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are the build service's own tables.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("build", migrationFiles)
}

// Store keeps builds, their steps and artifacts, the step logs and the
// event outbox in the service's database.
type Store struct {
	db *sqldb.DB
}

// NewStore keeps the service's records in db, which has the Migrations
// (servicekit opens and migrates it on start).
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

// Lease identifies the worker holding one attempt of a build.
type Lease struct {
	BuildID  string
	Attempt  int
	WorkerID string
	// TTL is how long a renewal keeps the lease.
	TTL time.Duration
}

// Create stores a new QUEUED build with its steps PENDING. It reports false
// when the run already has a build.
func (s *Store) Create(ctx context.Context, b domain.Build, steps []string) (bool, error) {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO builds (id, run_id, repository_id, repository_name, repository_url,
			commit_sha, branch, status, attempt, worker_id, lease_expires_at, failure_reason, failed_step, exit_code,
			last_log_lines, step_duration, created_at, started_at, ended_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, '', 0, '', '', 0, '[]', 0, $9, 0, 0)`,
			b.ID, b.RunID, b.Repository.ID, b.Repository.Name, b.Repository.URL, b.Commit, b.Branch,
			string(domain.Queued), sqldb.Nanos(b.CreateTime))
		if err != nil {
			return err
		}
		return insertSteps(ctx, tx, b.ID, steps)
	})
	if sqldb.IsUniqueViolation(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create build of run %s: %w", b.RunID, err)
	}
	return true, nil
}

func insertSteps(ctx context.Context, tx *sql.Tx, buildID string, steps []string) error {
	for i, name := range steps {
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO build_steps (build_id, idx, name, status, exit_code, started_at, ended_at) VALUES ($1, $2, $3, $4, 0, 0, 0)`,
			buildID, i, name, string(domain.StepPending)); err != nil {
			return err
		}
	}
	return nil
}

// Claim makes worker the holder of the build seen (at seen.Attempt) if it is
// still claimable at now: it becomes RUNNING in the next attempt, its steps
// are reset to PENDING, earlier artifacts are forgotten and evs are enqueued.
// It reports false when another worker claimed it first or the build is
// held by a live lease.
func (s *Store) Claim(ctx context.Context, seen domain.Build, l Lease, now time.Time, steps []string, evs ...events.Event) (bool, error) {
	claimed := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		claimed = false // InTx may run this again after a conflict on PostgreSQL
		res, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, attempt = attempt + 1, worker_id = $2,
			lease_expires_at = $3, started_at = $4, ended_at = 0, failure_reason = '', failed_step = '', exit_code = 0,
			last_log_lines = '[]', step_duration = 0
			WHERE id = $5 AND attempt = $6 AND (status = $7 OR (status = $1 AND lease_expires_at <= $4))`,
			string(domain.Running), l.WorkerID, now.Add(l.TTL).UnixNano(), now.UnixNano(),
			seen.ID, seen.Attempt, string(domain.Queued))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		claimed = true
		if _, err := tx.ExecContext(ctx, `DELETE FROM build_steps WHERE build_id = $1`, seen.ID); err != nil {
			return err
		}
		if err := insertSteps(ctx, tx, seen.ID, steps); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM artifacts WHERE build_id = $1`, seen.ID); err != nil {
			return err
		}
		return enqueue(ctx, tx, evs)
	})
	if err != nil {
		return false, fmt.Errorf("claim build %s: %w", seen.ID, err)
	}
	return claimed, nil
}

func enqueue(ctx context.Context, tx *sql.Tx, evs []events.Event) error {
	for _, ev := range evs {
		if err := events.Enqueue(ctx, tx, ev); err != nil {
			return err
		}
	}
	return nil
}

// hold renews the lease inside tx and fails with lease.ErrLost when the
// worker no longer holds the build, so that no write of a worker that was
// taken over lands.
func hold(ctx context.Context, tx *sql.Tx, l Lease) error {
	res, err := tx.ExecContext(ctx, `UPDATE builds SET lease_expires_at = $1
		WHERE id = $2 AND attempt = $3 AND worker_id = $4 AND status = $5`,
		time.Now().Add(l.TTL).UnixNano(), l.BuildID, l.Attempt, l.WorkerID, string(domain.Running))
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("build %s attempt %d is not %s's: %w", l.BuildID, l.Attempt, l.WorkerID, lease.ErrLost)
	}
	return nil
}

// RenewLease extends the lease by its TTL.
func (s *Store) RenewLease(ctx context.Context, l Lease) error {
	if err := s.db.InTx(ctx, func(tx *sql.Tx) error { return hold(ctx, tx, l) }); err != nil {
		return fmt.Errorf("renew lease of build %s: %w", l.BuildID, err)
	}
	return nil
}

// ReleaseLease lets another worker take the build over at once; the build
// stays RUNNING.
func (s *Store) ReleaseLease(ctx context.Context, l Lease) error {
	_, err := s.db.ExecContext(ctx, `UPDATE builds SET lease_expires_at = 0
		WHERE id = $1 AND attempt = $2 AND worker_id = $3 AND status = $4`,
		l.BuildID, l.Attempt, l.WorkerID, string(domain.Running))
	if err != nil {
		return fmt.Errorf("release lease of build %s: %w", l.BuildID, err)
	}
	return nil
}

// StepStarted marks step idx RUNNING and enqueues evs with it.
func (s *Store) StepStarted(ctx context.Context, l Lease, idx int, at time.Time, evs ...events.Event) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := hold(ctx, tx, l); err != nil {
			return err
		}
		// A try after a failed one starts the row afresh.
		if _, err := tx.ExecContext(ctx, `UPDATE build_steps SET status = $1, started_at = $2, exit_code = 0, ended_at = 0 WHERE build_id = $3 AND idx = $4`,
			string(domain.StepRunning), at.UnixNano(), l.BuildID, idx); err != nil {
			return err
		}
		return enqueue(ctx, tx, evs)
	})
	if err != nil {
		return fmt.Errorf("record start of step %d of build %s: %w", idx, l.BuildID, err)
	}
	return nil
}

// StepEnded records step idx's outcome and enqueues evs with it.
func (s *Store) StepEnded(ctx context.Context, l Lease, idx int, step domain.Step, evs ...events.Event) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := hold(ctx, tx, l); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE build_steps SET status = $1, exit_code = $2, ended_at = $3, tries = $4, reason = $5 WHERE build_id = $6 AND idx = $7`,
			string(step.Status), step.ExitCode, sqldb.Nanos(step.EndTime), step.Tries, step.Reason, l.BuildID, idx); err != nil {
			return err
		}
		return enqueue(ctx, tx, evs)
	})
	if err != nil {
		return fmt.Errorf("record end of step %q of build %s: %w", step.Name, l.BuildID, err)
	}
	return nil
}

// AddArtifact records a stored artifact and enqueues evs with it.
func (s *Store) AddArtifact(ctx context.Context, l Lease, a domain.Artifact, evs ...events.Event) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := hold(ctx, tx, l); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO artifacts (build_id, name, object_name, sha256, size, created_at, format)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (build_id, name) DO UPDATE SET object_name = $3, sha256 = $4, size = $5, created_at = $6, format = $7`,
			l.BuildID, a.Name, a.Object, a.SHA256, a.Size, time.Now().UnixNano(), int(a.Format)); err != nil {
			return err
		}
		return enqueue(ctx, tx, evs)
	})
	if err != nil {
		return fmt.Errorf("record artifact %q of build %s: %w", a.Name, l.BuildID, err)
	}
	return nil
}

// Outcome is how a build attempt ended.
type Outcome struct {
	Status       domain.Status
	Failure      domain.Failure
	StepDuration time.Duration
	EndTime      time.Time
}

// Finish ends the build with out, marks the steps that did not run SKIPPED
// and enqueues evs, in one transaction.
func (s *Store) Finish(ctx context.Context, l Lease, runID string, out Outcome, evs ...events.Event) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := hold(ctx, tx, l); err != nil {
			return err
		}
		// With the event that says the build ended: whoever learns of the
		// end finds the log complete.
		if err := steplog.CompleteIn(ctx, tx, runID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE builds SET status = $1, failure_reason = $2, failed_step = $3,
			exit_code = $4, last_log_lines = $5, step_duration = $6, ended_at = $7, lease_expires_at = 0 WHERE id = $8`,
			string(out.Status), sqldb.Text(out.Failure.Reason), out.Failure.Step, out.Failure.ExitCode, sqldb.StringList(out.Failure.LastLogLines),
			int64(out.StepDuration), out.EndTime.UnixNano(), l.BuildID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE build_steps SET status = $1 WHERE build_id = $2 AND status = $3`,
			string(domain.StepSkipped), l.BuildID, string(domain.StepPending)); err != nil {
			return err
		}
		// A step whose end could not be recorded before the build ended
		// (its run was cancelled as it ended) does not stay running.
		if _, err := tx.ExecContext(ctx, `UPDATE build_steps SET status = $1, exit_code = -1 WHERE build_id = $2 AND status = $3`,
			string(domain.StepCancelled), l.BuildID, string(domain.StepRunning)); err != nil {
			return err
		}
		return enqueue(ctx, tx, evs)
	})
	if err != nil {
		return fmt.Errorf("finish build %s: %w", l.BuildID, err)
	}
	return nil
}

const buildColumns = `id, run_id, repository_id, repository_name, repository_url, commit_sha, branch, status, attempt,
	worker_id, lease_expires_at, failure_reason, failed_step, exit_code, last_log_lines, step_duration,
	created_at, started_at, ended_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanBuild(r rowScanner) (domain.Build, error) {
	var b domain.Build
	var status string
	var leaseUntil, stepDur, created, started, ended int64
	err := r.Scan(&b.ID, &b.RunID, &b.Repository.ID, &b.Repository.Name, &b.Repository.URL, &b.Commit, &b.Branch,
		&status, &b.Attempt, &b.WorkerID, &leaseUntil, &b.Failure.Reason, &b.Failure.Step, &b.Failure.ExitCode,
		(*sqldb.StringList)(&b.Failure.LastLogLines), &stepDur, &created, &started, &ended)
	if err != nil {
		return b, err
	}
	b.Status = domain.Status(status)
	b.LeaseExpires = sqldb.Time(leaseUntil)
	b.StepDuration = time.Duration(stepDur)
	b.CreateTime, b.StartTime, b.EndTime = sqldb.Time(created), sqldb.Time(started), sqldb.Time(ended)
	return b, nil
}

// ByRun returns the run's build; the error wraps apierror.ErrNotFound when
// the run has none.
func (s *Store) ByRun(ctx context.Context, runID string) (domain.Build, error) {
	return s.one(ctx, `SELECT `+buildColumns+` FROM builds WHERE run_id = $1`, runID, fmt.Sprintf("no build for run %s", runID))
}

// Get returns the build with id, or the build of the run id.
func (s *Store) Get(ctx context.Context, id string) (domain.Build, error) {
	return s.one(ctx, `SELECT `+buildColumns+` FROM builds WHERE id = $1 OR run_id = $1`, id,
		fmt.Sprintf("no build with id or run id %s", id))
}

func (s *Store) one(ctx context.Context, query, arg, notFound string) (domain.Build, error) {
	b, err := scanBuild(s.db.QueryRowContext(ctx, query, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return b, fmt.Errorf("%s: %w", notFound, apierror.ErrNotFound)
	}
	if err != nil {
		return b, fmt.Errorf("read build %s: %w", arg, err)
	}
	if err := s.details(ctx, &b); err != nil {
		return b, err
	}
	return b, nil
}

// List returns the builds of page, newest first: page.Limit() of them at
// most, so that the caller sees whether more follow (paging.Cut).
func (s *Store) List(ctx context.Context, page paging.Page) ([]domain.Build, error) {
	builds, err := s.listBuilds(ctx, page)
	if err != nil {
		return nil, fmt.Errorf("list builds: %w", err)
	}
	// Details after the rows are closed: the database has one connection.
	// The row past the page only says that more follow: it needs none.
	for i := range builds[:min(len(builds), page.Size)] {
		if err := s.details(ctx, &builds[i]); err != nil {
			return nil, err
		}
	}
	return builds, nil
}

func (s *Store) listBuilds(ctx context.Context, page paging.Page) ([]domain.Build, error) {
	after, args := page.Where("created_at", "id", true, 2)
	rows, err := s.db.QueryContext(ctx, `SELECT `+buildColumns+` FROM builds WHERE `+after+`
		ORDER BY created_at DESC, id DESC LIMIT $1`, append([]any{page.Limit()}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var builds []domain.Build
	for rows.Next() {
		b, err := scanBuild(rows)
		if err != nil {
			return nil, err
		}
		builds = append(builds, b)
	}
	return builds, rows.Err()
}

// details loads the build's steps and artifacts.
func (s *Store) details(ctx context.Context, b *domain.Build) error {
	rows, err := s.db.QueryContext(ctx,
		`SELECT name, status, exit_code, started_at, ended_at, tries, reason FROM build_steps WHERE build_id = $1 ORDER BY idx`, b.ID)
	if err != nil {
		return fmt.Errorf("read steps of build %s: %w", b.ID, err)
	}
	defer rows.Close()
	b.Steps = nil
	for rows.Next() {
		var st domain.Step
		var status string
		var started, ended int64
		if err := rows.Scan(&st.Name, &status, &st.ExitCode, &started, &ended, &st.Tries, &st.Reason); err != nil {
			return fmt.Errorf("read steps of build %s: %w", b.ID, err)
		}
		st.Status = domain.StepStatus(status)
		st.StartTime, st.EndTime = sqldb.Time(started), sqldb.Time(ended)
		b.Steps = append(b.Steps, st)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read steps of build %s: %w", b.ID, err)
	}
	_ = rows.Close()

	arts, err := s.db.QueryContext(ctx,
		`SELECT name, object_name, sha256, size, format FROM artifacts WHERE build_id = $1 ORDER BY created_at, name`, b.ID)
	if err != nil {
		return fmt.Errorf("read artifacts of build %s: %w", b.ID, err)
	}
	defer arts.Close()
	b.Artifacts = nil
	for arts.Next() {
		var a domain.Artifact
		if err := arts.Scan(&a.Name, &a.Object, &a.SHA256, &a.Size, &a.Format); err != nil {
			return fmt.Errorf("read artifacts of build %s: %w", b.ID, err)
		}
		b.Artifacts = append(b.Artifacts, a)
	}
	if err := arts.Err(); err != nil {
		return fmt.Errorf("read artifacts of build %s: %w", b.ID, err)
	}
	return nil
}
