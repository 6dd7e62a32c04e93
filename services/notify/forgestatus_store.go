package notify

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// queueForgeStatus records fs, in tx, as the status to set for its key,
// unless a newer one (a higher sequence) is recorded already. It is due at
// now, or when the lease of an attempt at an older one ends.
func queueForgeStatus(ctx context.Context, tx *sql.Tx, fs domain.ForgeStatus, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO forge_statuses (repository_id, commit_sha, context, sequence, repository, run_id,
			forge_kind, forge_url, forge_project, state, description, status, attempt_count, last_error, created_at,
			next_attempt_at, leased_until, delivered_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, '', $13, $13, 0, 0)
		ON CONFLICT (repository_id, commit_sha, context) DO UPDATE SET sequence = excluded.sequence,
			repository = excluded.repository, run_id = excluded.run_id, forge_kind = excluded.forge_kind,
			forge_url = excluded.forge_url, forge_project = excluded.forge_project, state = excluded.state,
			description = excluded.description, status = excluded.status, attempt_count = 0, last_error = '',
			created_at = excluded.created_at,
			next_attempt_at = CASE WHEN forge_statuses.leased_until > excluded.next_attempt_at
				THEN forge_statuses.leased_until ELSE excluded.next_attempt_at END
		WHERE excluded.sequence > forge_statuses.sequence`,
		fs.RepositoryID, fs.Commit, fs.Context, int64(fs.Sequence), fs.Repository, fs.RunID,
		string(fs.Forge.Kind), fs.Forge.URL, fs.Forge.Project, string(fs.Status.State), fs.Status.Description,
		string(domain.StatusPending), sqldb.Nanos(now))
	if err != nil {
		return fmt.Errorf("queue commit status %s of %s: %w", fs.Context, fs.Commit, err)
	}
	return nil
}

const forgeStatusColumns = `repository_id, commit_sha, context, sequence, repository, run_id, forge_kind, forge_url,
	forge_project, state, description, status, attempt_count, last_error, created_at, next_attempt_at`

func scanForgeStatus(row interface{ Scan(...any) error }) (domain.ForgeStatus, error) {
	var fs domain.ForgeStatus
	var seq, created, next int64
	var kind, state, status string
	err := row.Scan(&fs.RepositoryID, &fs.Commit, &fs.Context, &seq, &fs.Repository, &fs.RunID, &kind, &fs.Forge.URL,
		&fs.Forge.Project, &state, &fs.Status.Description, &status, &fs.AttemptCount, &fs.LastError, &created, &next)
	fs.Sequence = uint64(seq)
	fs.Forge.Kind, fs.Status.State, fs.Delivery = forge.Kind(kind), forge.State(state), domain.Status(status)
	fs.Status.Context = fs.Context
	fs.CreatedAt, fs.NextAttemptAt = sqldb.Time(created), sqldb.Time(next)
	return fs, err
}

// ClaimForgeStatuses takes up to limit pending statuses due at now and
// leases them until leaseUntil: no other worker takes them, and a newer
// status of the same key waits for the lease.
func (s *Store) ClaimForgeStatuses(ctx context.Context, now, leaseUntil time.Time, limit int) ([]domain.ForgeStatus, error) {
	var claimed []domain.ForgeStatus
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		claimed = nil
		due, err := dueForgeStatuses(ctx, tx, now, limit)
		if err != nil {
			return err
		}
		claimed, err = leaseDue(due, "commit status", func(fs *domain.ForgeStatus) (sql.Result, error) {
			fs.LeasedUntil = leaseUntil
			return tx.ExecContext(ctx, `UPDATE forge_statuses SET next_attempt_at = $1, leased_until = $1
				WHERE repository_id = $2 AND commit_sha = $3 AND context = $4 AND sequence = $5 AND status = $6 AND next_attempt_at = $7`,
				sqldb.Nanos(leaseUntil), fs.RepositoryID, fs.Commit, fs.Context, int64(fs.Sequence),
				string(domain.StatusPending), sqldb.Nanos(fs.NextAttemptAt))
		})
		return err
	})
	return claimed, err
}

func dueForgeStatuses(ctx context.Context, tx *sql.Tx, now time.Time, limit int) ([]domain.ForgeStatus, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+forgeStatusColumns+` FROM forge_statuses
		WHERE status = $1 AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3`,
		string(domain.StatusPending), sqldb.Nanos(now), limit)
	if err != nil {
		return nil, fmt.Errorf("find due commit statuses: %w", err)
	}
	due, err := sqldb.Collect(rows, func(r *sql.Rows) (domain.ForgeStatus, error) { return scanForgeStatus(r) })
	if err != nil {
		return nil, fmt.Errorf("find due commit statuses: %w", err)
	}
	return due, nil
}

// leaseDue leases each of due with lease, a conditional UPDATE of its row
// that sets its lease (and records it in the item), and returns those it
// leased: a row another worker leased meanwhile is left out.
func leaseDue[T any](due []T, what string, lease func(*T) (sql.Result, error)) ([]T, error) {
	var leased []T
	for _, item := range due {
		res, err := lease(&item)
		if err != nil {
			return nil, fmt.Errorf("lease %s: %w", what, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, fmt.Errorf("lease %s: %w", what, err)
		} else if n == 1 {
			leased = append(leased, item)
		}
	}
	return leased, nil
}

// forgeOutcome is what an attempt at a status (or a release) came to.
type forgeOutcome struct {
	err error
	// retryAt is when to try again; zero with err: give up (dead).
	retryAt time.Time
}

// columns are what o, of an attempt that ended at now, sets of its row:
// status, next_attempt_at, last_error and delivered_at.
func (o forgeOutcome) columns(now time.Time) (status string, next int64, lastError string, delivered int64) {
	switch {
	case o.err == nil:
		return string(domain.StatusSucceeded), 0, "", sqldb.Nanos(now)
	case o.retryAt.IsZero():
		return string(domain.StatusDead), 0, o.err.Error(), 0
	}
	return string(domain.StatusPending), sqldb.Nanos(o.retryAt), o.err.Error(), 0
}

// RecordForgeStatus ends the lease of the attempt at fs. When a newer
// status of its key came meanwhile, that one is due now and fs's outcome
// is moot; else fs is set (delivered), due again at o.retryAt, or dead.
// Nothing is recorded when fs's lease is no longer its worker's (it
// lapsed and another worker took the key): that worker records.
func (s *Store) RecordForgeStatus(ctx context.Context, fs domain.ForgeStatus, o forgeOutcome, now time.Time) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		key := []any{fs.RepositoryID, fs.Commit, fs.Context, int64(fs.Sequence), sqldb.Nanos(fs.LeasedUntil)}
		res, err := tx.ExecContext(ctx, `UPDATE forge_statuses SET leased_until = 0,
				next_attempt_at = CASE WHEN next_attempt_at > $6 THEN $6 ELSE next_attempt_at END
			WHERE repository_id = $1 AND commit_sha = $2 AND context = $3 AND sequence <> $4 AND leased_until = $5`,
			append(key, sqldb.Nanos(now))...)
		if err != nil {
			return fmt.Errorf("record commit status: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err // superseded
		}
		status, next, lastError, delivered := o.columns(now)
		_, err = tx.ExecContext(ctx, `UPDATE forge_statuses SET leased_until = 0, status = $6, next_attempt_at = $7,
				last_error = $8, delivered_at = $9, attempt_count = attempt_count + 1
			WHERE repository_id = $1 AND commit_sha = $2 AND context = $3 AND sequence = $4 AND leased_until = $5`,
			append(key, status, next, lastError, delivered)...)
		if err != nil {
			return fmt.Errorf("record commit status: %w", err)
		}
		return nil
	})
}

// NextForgeStatusDue is when the earliest pending status is due (or its
// lease ends); with none pending, it is not found.
func (s *Store) NextForgeStatusDue(ctx context.Context) (time.Time, error) {
	return s.nextDue(ctx, "forge_statuses", "commit status")
}
