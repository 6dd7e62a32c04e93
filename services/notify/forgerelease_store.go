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

// queueForgeRelease records fr, in tx, as a release to make on its forge,
// due at now; a release recorded already is left as it is.
func queueForgeRelease(ctx context.Context, tx *sql.Tx, fr domain.ForgeRelease, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO forge_releases (release_id, repository_id, repository, run_id, forge_kind, forge_url,
			forge_project, tag, commit_sha, version, changelog, status, attempt_count, last_error, created_at, next_attempt_at,
			leased_until, delivered_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0, '', $13, $13, 0, 0)
		ON CONFLICT (release_id) DO NOTHING`,
		fr.ReleaseID, fr.RepositoryID, fr.Repository, fr.RunID, string(fr.Forge.Kind), fr.Forge.URL, fr.Forge.Project,
		fr.Release.Tag, fr.Release.Commit, fr.Version, fr.Release.Notes, string(domain.StatusPending), sqldb.Nanos(now))
	if err != nil {
		return fmt.Errorf("queue the forge release of %s %s: %w", fr.Repository, fr.Version, err)
	}
	return nil
}

const forgeReleaseColumns = `release_id, repository_id, repository, run_id, forge_kind, forge_url, forge_project, tag, commit_sha,
	version, changelog, status, attempt_count, last_error, created_at, next_attempt_at`

func scanForgeRelease(row interface{ Scan(...any) error }) (domain.ForgeRelease, error) {
	var fr domain.ForgeRelease
	var created, next int64
	var kind, status string
	err := row.Scan(&fr.ReleaseID, &fr.RepositoryID, &fr.Repository, &fr.RunID, &kind, &fr.Forge.URL, &fr.Forge.Project,
		&fr.Release.Tag, &fr.Release.Commit, &fr.Version, &fr.Release.Notes, &status, &fr.AttemptCount, &fr.LastError, &created, &next)
	fr.Forge.Kind, fr.Delivery = forge.Kind(kind), domain.Status(status)
	fr.Release.Name = fr.Version
	fr.CreatedAt, fr.NextAttemptAt = sqldb.Time(created), sqldb.Time(next)
	return fr, err
}

// ClaimForgeReleases takes up to limit pending releases due at now and
// leases them until leaseUntil: no other worker takes them meanwhile.
func (s *Store) ClaimForgeReleases(ctx context.Context, now, leaseUntil time.Time, limit int) ([]domain.ForgeRelease, error) {
	var claimed []domain.ForgeRelease
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		claimed = nil
		due, err := dueForgeReleases(ctx, tx, now, limit)
		if err != nil {
			return err
		}
		claimed, err = leaseDue(due, "forge release", func(fr *domain.ForgeRelease) (sql.Result, error) {
			fr.LeasedUntil = leaseUntil
			return tx.ExecContext(ctx, `UPDATE forge_releases SET next_attempt_at = $1, leased_until = $1
				WHERE release_id = $2 AND status = $3 AND next_attempt_at = $4`,
				sqldb.Nanos(leaseUntil), fr.ReleaseID, string(domain.StatusPending), sqldb.Nanos(fr.NextAttemptAt))
		})
		return err
	})
	return claimed, err
}

func dueForgeReleases(ctx context.Context, tx *sql.Tx, now time.Time, limit int) ([]domain.ForgeRelease, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+forgeReleaseColumns+` FROM forge_releases
		WHERE status = $1 AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3`,
		string(domain.StatusPending), sqldb.Nanos(now), limit)
	if err != nil {
		return nil, fmt.Errorf("find due forge releases: %w", err)
	}
	due, err := sqldb.Collect(rows, func(r *sql.Rows) (domain.ForgeRelease, error) { return scanForgeRelease(r) })
	if err != nil {
		return nil, fmt.Errorf("find due forge releases: %w", err)
	}
	return due, nil
}

// RecordForgeRelease ends the lease of the attempt at fr: made
// (delivered), due again at o.retryAt, or dead. Nothing is recorded when
// fr's lease is no longer its worker's (it lapsed and another worker took
// the release): that worker records.
func (s *Store) RecordForgeRelease(ctx context.Context, fr domain.ForgeRelease, o forgeOutcome, now time.Time) error {
	status, next, lastError, delivered := o.columns(now)
	_, err := s.db.ExecContext(ctx, `UPDATE forge_releases SET leased_until = 0, status = $3, next_attempt_at = $4,
			last_error = $5, delivered_at = $6, attempt_count = attempt_count + 1
		WHERE release_id = $1 AND leased_until = $2`,
		fr.ReleaseID, sqldb.Nanos(fr.LeasedUntil), status, next, lastError, delivered)
	if err != nil {
		return fmt.Errorf("record forge release: %w", err)
	}
	return nil
}

// NextForgeReleaseDue is when the earliest pending release is due (or its
// lease ends); with none pending, it is not found.
func (s *Store) NextForgeReleaseDue(ctx context.Context) (time.Time, error) {
	return s.nextDue(ctx, "forge_releases", "forge release")
}
