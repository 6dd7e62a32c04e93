package release

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/services/release/domain"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are the release service's tables.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("release", migrationFiles)
}

// Store is the release service's SQL. A row that is not there is
// apierror.ErrNotFound.
type Store struct {
	db *sqldb.DB
}

// NewStore keeps the service's records in db, which has the Migrations
// (servicekit opens and migrates it on start).
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

// InTx runs fn in a transaction.
func (s *Store) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error { return s.db.InTx(ctx, fn) }

// Release stage states.
const (
	runReleasing = "RELEASING"
	runFinished  = "FINISHED"
)

// stageRun is the release stage of one run.
type stageRun struct {
	RunID      string
	Repository string
	ReleaseID  string
	State      string
	Outcome    string
	Reason     string
}

// beginRun records that the release stage of runID started, unless it is
// already recorded, and returns the record.
func (s *Store) beginRun(ctx context.Context, runID, repository string) (stageRun, error) {
	now := time.Now().UnixNano()
	if _, err := s.db.ExecContext(ctx,
		`INSERT INTO release_runs (run_id, repository, release_id, state, outcome, reason, created_at, updated_at)
		 VALUES ($1, $2, '', $3, '', '', $4, $4) ON CONFLICT (run_id) DO NOTHING`,
		runID, repository, runReleasing, now); err != nil {
		return stageRun{}, fmt.Errorf("record release stage of run %s: %w", runID, err)
	}
	return s.stageRun(ctx, runID)
}

// stageRun returns the release stage of runID.
func (s *Store) stageRun(ctx context.Context, runID string) (stageRun, error) {
	var r stageRun
	err := s.db.QueryRowContext(ctx,
		`SELECT run_id, repository, release_id, state, outcome, reason FROM release_runs WHERE run_id = $1`, runID).
		Scan(&r.RunID, &r.Repository, &r.ReleaseID, &r.State, &r.Outcome, &r.Reason)
	if errors.Is(err, sql.ErrNoRows) {
		return stageRun{}, fmt.Errorf("run %q has no release stage: %w", runID, apierror.ErrNotFound)
	}
	if err != nil {
		return stageRun{}, fmt.Errorf("read release stage of run %s: %w", runID, err)
	}
	return r, nil
}

// setRunRelease links the run's release stage to its release.
func setRunRelease(ctx context.Context, tx *sql.Tx, runID, releaseID string) error {
	_, err := tx.ExecContext(ctx, `UPDATE release_runs SET release_id = $1, updated_at = $2 WHERE run_id = $3`,
		releaseID, time.Now().UnixNano(), runID)
	if err != nil {
		return fmt.Errorf("link run %s to release: %w", runID, err)
	}
	return nil
}

// finishRun marks the run's release stage finished; false when it already was.
func finishRun(ctx context.Context, tx *sql.Tx, runID, outcome, reason string) (bool, error) {
	res, err := tx.ExecContext(ctx,
		`UPDATE release_runs SET state = $1, outcome = $2, reason = $3, updated_at = $4 WHERE run_id = $5 AND state <> $1`,
		runFinished, outcome, sqldb.Text(reason), time.Now().UnixNano(), runID)
	if err != nil {
		return false, fmt.Errorf("finish release stage of run %s: %w", runID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("finish release stage of run %s: %w", runID, err)
	}
	return n == 1, nil
}

// environmentJSON is how a release's environments are stored.
type environmentJSON struct {
	Name          string            `json:"name"`
	Deploy        string            `json:"deploy"`
	DeployTimeout time.Duration     `json:"deploy_timeout,omitempty"`
	VerifyHTTP    string            `json:"verify_http,omitempty"`
	VerifyCommand string            `json:"verify_command,omitempty"`
	VerifyTimeout time.Duration     `json:"verify_timeout,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Secrets       map[string]string `json:"secrets,omitempty"`
	Redeploy      bool              `json:"redeploy_on_interrupt,omitempty"`
}

func encodeEnvironments(envs []domain.Environment) (string, error) {
	out := make([]environmentJSON, 0, len(envs))
	for _, e := range envs {
		out = append(out, environmentJSON{
			Name: e.Name, Deploy: e.Deploy, DeployTimeout: e.DeployTimeout,
			VerifyHTTP: e.Verify.HTTP, VerifyCommand: e.Verify.Command, VerifyTimeout: e.Verify.Timeout,
			Env: e.Env, Secrets: e.Secrets, Redeploy: e.RedeployOnInterrupt,
		})
	}
	b, err := json.Marshal(out)
	return string(b), err
}

func decodeEnvironments(s string) ([]domain.Environment, error) {
	var in []environmentJSON
	if err := json.Unmarshal([]byte(s), &in); err != nil {
		return nil, err
	}
	out := make([]domain.Environment, 0, len(in))
	for _, e := range in {
		out = append(out, domain.Environment{
			Name: e.Name, Deploy: e.Deploy, DeployTimeout: e.DeployTimeout,
			Verify: domain.Verify{HTTP: e.VerifyHTTP, Command: e.VerifyCommand, Timeout: e.VerifyTimeout},
			Env:    e.Env, Secrets: e.Secrets, RedeployOnInterrupt: e.Redeploy,
		})
	}
	return out, nil
}

// insertRelease records rel with its artifacts.
func insertRelease(ctx context.Context, tx *sql.Tx, rel domain.Release) error {
	envs, err := encodeEnvironments(rel.Environments)
	if err != nil {
		return fmt.Errorf("encode environments of %s: %w", rel.Version, err)
	}
	_, err = tx.ExecContext(ctx,
		`INSERT INTO releases (id, repository, repository_id, repository_url, version, major, minor, patch,
		   commit_sha, run_id, changelog, environments, status, created_at, repository_git_credential)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		rel.ID, rel.Repository.Name, rel.Repository.ID, rel.Repository.URL, rel.Version.String(),
		rel.Version.Major, rel.Version.Minor, rel.Version.Patch,
		rel.Commit, rel.RunID, rel.Changelog, envs, string(rel.Status), sqldb.Nanos(rel.CreatedAt), int(rel.Repository.GitCredential))
	if err != nil {
		return fmt.Errorf("record release %s of %s: %w", rel.Version, rel.Repository.Name, err)
	}
	for i, a := range rel.Artifacts {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO release_artifacts (release_id, position, name, object, sha256, size, kept_object, format) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			rel.ID, i, a.Name, a.Object, a.SHA256, a.Size, a.KeptObject, int(a.Format))
		if err != nil {
			return fmt.Errorf("record artifact %q of release %s: %w", a.Name, rel.Version, err)
		}
	}
	return nil
}

// setReleaseStatus sets the release's status.
func setReleaseStatus(ctx context.Context, tx *sql.Tx, id string, status domain.ReleaseStatus) error {
	if _, err := tx.ExecContext(ctx, `UPDATE releases SET status = $1 WHERE id = $2`, string(status), id); err != nil {
		return fmt.Errorf("set release %s %s: %w", id, status, err)
	}
	return nil
}

const releaseColumns = `id, repository, repository_id, repository_url, version, commit_sha, run_id, changelog,
	environments, status, created_at, repository_git_credential, pruned_at`

func scanRelease(src row) (domain.Release, error) {
	var (
		r         domain.Release
		version   string
		envs      string
		status    string
		createdAt int64
		prunedAt  int64
	)
	if err := src.Scan(&r.ID, &r.Repository.Name, &r.Repository.ID, &r.Repository.URL, &version, &r.Commit, &r.RunID,
		&r.Changelog, &envs, &status, &createdAt, &r.Repository.GitCredential, &prunedAt); err != nil {
		return domain.Release{}, err
	}
	v, err := domain.ParseVersion(version)
	if err != nil {
		return domain.Release{}, fmt.Errorf("stored release %s: %w", r.ID, err)
	}
	r.Version = v
	if r.Environments, err = decodeEnvironments(envs); err != nil {
		return domain.Release{}, fmt.Errorf("stored release %s environments: %w", r.ID, err)
	}
	r.Status = domain.ReleaseStatus(status)
	r.CreatedAt, r.PrunedAt = sqldb.Time(createdAt), sqldb.Time(prunedAt)
	return r, nil
}

// queryReleases runs a query selecting releaseColumns and loads the artifacts.
func (s *Store) queryReleases(ctx context.Context, query string, args ...any) ([]domain.Release, error) {
	out, err := queryAll(ctx, s.db, scanRelease, query, args...)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	ids := make([]any, len(out))
	marks := make([]string, len(out))
	byID := make(map[string]int, len(out))
	for i, r := range out {
		ids[i] = r.ID
		marks[i] = fmt.Sprintf("$%d", i+1)
		byID[r.ID] = i
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT release_id, name, object, sha256, size, kept_object, format FROM release_artifacts
		 WHERE release_id IN (`+strings.Join(marks, ", ")+`) ORDER BY release_id, position`, ids...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var a domain.Artifact
		if err := rows.Scan(&id, &a.Name, &a.Object, &a.SHA256, &a.Size, &a.KeptObject, &a.Format); err != nil {
			return nil, err
		}
		i := byID[id]
		out[i].Artifacts = append(out[i].Artifacts, a)
	}
	return out, rows.Err()
}

// row is what a scan function reads from: *sql.Row or *sql.Rows.
type row interface{ Scan(...any) error }

// queryAll runs query and scans each row it returns with scan.
func queryAll[T any](ctx context.Context, db *sqldb.DB, scan func(row) (T, error), query string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		item, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, item)
	}
	return out, rows.Err()
}

// oneRelease is the first release query selects; what says what was
// looked for, in the not-found error too.
func (s *Store) oneRelease(ctx context.Context, what, query string, args ...any) (domain.Release, error) {
	rels, err := s.queryReleases(ctx, query, args...)
	if err != nil {
		return domain.Release{}, fmt.Errorf("read %s: %w", what, err)
	}
	if len(rels) == 0 {
		return domain.Release{}, fmt.Errorf("%s: %w", what, apierror.ErrNotFound)
	}
	return rels[0], nil
}

// Release returns the release with id.
func (s *Store) Release(ctx context.Context, id string) (domain.Release, error) {
	return s.oneRelease(ctx, "release "+id, `SELECT `+releaseColumns+` FROM releases WHERE id = $1`, id)
}

// LatestRelease returns the repository's release with the highest version.
func (s *Store) LatestRelease(ctx context.Context, repository string) (domain.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("a release of %q", repository),
		`SELECT `+releaseColumns+` FROM releases WHERE repository = $1 ORDER BY major DESC, minor DESC, patch DESC LIMIT 1`,
		repository)
}

// ReleaseOfCommit returns the repository's release of commit.
func (s *Store) ReleaseOfCommit(ctx context.Context, repository, commit string) (domain.Release, error) {
	return s.oneRelease(ctx, "release of commit "+commit,
		`SELECT `+releaseColumns+` FROM releases WHERE repository = $1 AND commit_sha = $2
		 ORDER BY major DESC, minor DESC, patch DESC LIMIT 1`, repository, commit)
}

// ReleasedCommit is a release's version and commit.
type ReleasedCommit struct {
	Version domain.Version
	Commit  string
}

// ReleasedCommits returns the repository's releases, the highest version
// first, at most limit of them.
func (s *Store) ReleasedCommits(ctx context.Context, repository string, limit int) ([]ReleasedCommit, error) {
	out, err := queryAll(ctx, s.db, func(src row) (ReleasedCommit, error) {
		var r ReleasedCommit
		var version string
		if err := src.Scan(&version, &r.Commit); err != nil {
			return r, err
		}
		v, err := domain.ParseVersion(version)
		r.Version = v
		return r, err
	}, `SELECT version, commit_sha FROM releases WHERE repository = $1 ORDER BY major DESC, minor DESC, patch DESC LIMIT $2`,
		repository, limit)
	if err != nil {
		return nil, fmt.Errorf("list the releases of %q: %w", repository, err)
	}
	return out, nil
}

// ReleaseByVersion returns the repository's release with version.
func (s *Store) ReleaseByVersion(ctx context.Context, repository string, version domain.Version) (domain.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("release %s of %q", version, repository),
		`SELECT `+releaseColumns+` FROM releases WHERE repository = $1 AND version = $2`, repository, version.String())
}

// OlderVerifiedRelease returns the repository's release with the highest
// version below than, among the releases that are not bad and were
// verified in environment (running there now or replaced since).
func (s *Store) OlderVerifiedRelease(ctx context.Context, repository, environment string, than domain.Version) (domain.Release, error) {
	return s.oneRelease(ctx, fmt.Sprintf("a release of %q older than %s verified in %q", repository, than, environment),
		`SELECT `+releaseColumns+` FROM releases r WHERE r.repository = $1 AND r.status <> $2
		   AND (r.major < $3 OR (r.major = $3 AND (r.minor < $4 OR (r.minor = $4 AND r.patch < $5))))
		   AND EXISTS (SELECT 1 FROM deployments d WHERE d.release_id = r.id AND d.environment = $6 AND d.status IN ($7, $8))
		 ORDER BY r.major DESC, r.minor DESC, r.patch DESC LIMIT 1`,
		repository, string(domain.ReleaseBad), than.Major, than.Minor, than.Patch, environment,
		string(domain.DeploymentVerified), string(domain.DeploymentRolledBack))
}

// ListFilter says which releases or deployments a list holds: those of a
// repository, of a run, or both; Environment narrows deployments.
type ListFilter struct {
	Repository  string
	RunID       string
	Environment string
}

// ListReleases returns a page of releases, newest first, fetching
// page.Limit() rows (paging.Cut cuts them). A run's release is the one
// its release stage released or released again.
func (s *Store) ListReleases(ctx context.Context, f ListFilter, page paging.Page) ([]domain.Release, error) {
	after, args := page.Where("created_at", "id", true, 4)
	rels, err := s.queryReleases(ctx,
		`SELECT `+releaseColumns+` FROM releases
		 WHERE ($1 = '' OR repository = $1) AND ($2 = '' OR id IN (SELECT release_id FROM release_runs WHERE run_id = $2))
		   AND `+after+` ORDER BY created_at DESC, id DESC LIMIT $3`,
		append([]any{f.Repository, f.RunID, page.Limit()}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	return rels, nil
}

const deploymentColumns = `id, release_id, repository, environment, version, run_id, rollback, started, status, reason,
	failed_step, last_log_lines, created_at, ended_at, attempts, superseded`

func scanDeployment(src row) (domain.Deployment, error) {
	var (
		d                  domain.Deployment
		rollback, started  int
		superseded         int
		status             string
		createdAt, endedAt int64
	)
	if err := src.Scan(&d.ID, &d.ReleaseID, &d.Repository, &d.Environment, &d.Version, &d.RunID, &rollback, &started,
		&status, &d.Reason, &d.FailedStep, (*sqldb.StringList)(&d.LastLogLines), &createdAt, &endedAt, &d.Attempts, &superseded); err != nil {
		return domain.Deployment{}, err
	}
	if len(d.LastLogLines) == 0 {
		d.LastLogLines = nil
	}
	d.Rollback, d.Started, d.Superseded = rollback != 0, started != 0, superseded != 0
	d.Status = domain.DeploymentStatus(status)
	d.CreatedAt, d.EndedAt = sqldb.Time(createdAt), sqldb.Time(endedAt)
	return d, nil
}

func (s *Store) queryDeployments(ctx context.Context, query string, args ...any) ([]domain.Deployment, error) {
	return queryAll(ctx, s.db, scanDeployment, query, args...)
}

// oneDeployment is the first deployment query selects; what says what was
// looked for, in the not-found error too.
func (s *Store) oneDeployment(ctx context.Context, what, query string, args ...any) (domain.Deployment, error) {
	ds, err := s.queryDeployments(ctx, query, args...)
	if err != nil {
		return domain.Deployment{}, fmt.Errorf("read %s: %w", what, err)
	}
	if len(ds) == 0 {
		return domain.Deployment{}, fmt.Errorf("%s: %w", what, apierror.ErrNotFound)
	}
	return ds[0], nil
}

// InsertDeployment records d before anything is deployed.
func (s *Store) InsertDeployment(ctx context.Context, d domain.Deployment) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO deployments (id, release_id, repository, environment, version, run_id, rollback, started, status, reason,
			   log, failed_step, last_log_lines, created_at, ended_at)
			 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '', $11, $12, $13, $14)`,
			d.ID, d.ReleaseID, d.Repository, d.Environment, d.Version, d.RunID, boolInt(d.Rollback), boolInt(d.Started),
			string(d.Status), sqldb.Text(d.Reason), d.FailedStep, sqldb.StringList(d.LastLogLines),
			sqldb.Nanos(d.CreatedAt), sqldb.Nanos(d.EndedAt))
		if err != nil {
			return err
		}
		// A rollback asked for through the API is recorded with the
		// deployment it starts; a deploy of a run is no call (Record does
		// nothing).
		return audit.Record(ctx, tx, audit.Target{Repository: d.Repository, ID: d.Environment + " " + d.Version})
	})
	if err != nil {
		return fmt.Errorf("record deployment of %s to %s: %w", d.Version, d.Environment, err)
	}
	return nil
}

// FailInProgressDeployments fails the run's deployments that are still in
// progress, with reason, and returns how many there were.
func (s *Store) FailInProgressDeployments(ctx context.Context, runID, reason string) (int64, error) {
	res, err := s.db.ExecContext(ctx,
		`UPDATE deployments SET status = $1, reason = $2, ended_at = $3 WHERE run_id = $4 AND status IN ($5, $6)`,
		string(domain.DeploymentFailed), reason, time.Now().UnixNano(), runID,
		string(domain.DeploymentDeploying), string(domain.DeploymentVerifying))
	if err != nil {
		return 0, fmt.Errorf("fail in-progress deployments of run %s: %w", runID, err)
	}
	return res.RowsAffected()
}

// Deployment returns the deployment with id.
func (s *Store) Deployment(ctx context.Context, id string) (domain.Deployment, error) {
	return s.oneDeployment(ctx, "deployment "+id, `SELECT `+deploymentColumns+` FROM deployments WHERE id = $1`, id)
}

// RunDeployment returns the run's deployment (or rollback) to environment.
func (s *Store) RunDeployment(ctx context.Context, runID, environment string, rollback bool) (domain.Deployment, error) {
	return s.oneDeployment(ctx, fmt.Sprintf("deployment of run %s to %s", runID, environment),
		`SELECT `+deploymentColumns+` FROM deployments WHERE run_id = $1 AND environment = $2 AND rollback = $3`,
		runID, environment, boolInt(rollback))
}

// MarkStarted records that the deploy command of deployment id is about to
// run (once more).
func (s *Store) MarkStarted(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE deployments SET started = 1, attempts = attempts + 1 WHERE id = $1`, id); err != nil {
		return fmt.Errorf("mark deployment %s started: %w", id, err)
	}
	return nil
}

// SetDeploymentStatus sets the status of a deployment in progress.
func (s *Store) SetDeploymentStatus(ctx context.Context, id string, status domain.DeploymentStatus) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE deployments SET status = $1 WHERE id = $2`, string(status), id); err != nil {
		return fmt.Errorf("set deployment %s %s: %w", id, status, err)
	}
	return nil
}

// endDeployment stores d's final status, reason, failed step, last lines
// and end time.
func endDeployment(ctx context.Context, tx *sql.Tx, d domain.Deployment) error {
	_, err := tx.ExecContext(ctx,
		`UPDATE deployments SET status = $1, reason = $2, failed_step = $3, last_log_lines = $4, ended_at = $5, superseded = $6 WHERE id = $7`,
		string(d.Status), sqldb.Text(d.Reason), d.FailedStep, sqldb.StringList(d.LastLogLines), sqldb.Nanos(d.EndedAt), boolInt(d.Superseded), d.ID)
	if err != nil {
		return fmt.Errorf("end deployment %s: %w", d.ID, err)
	}
	return nil
}

// markRolledBack records that a manual rollback replaced deployment id.
func markRolledBack(ctx context.Context, tx *sql.Tx, id string) error {
	if _, err := tx.ExecContext(ctx, `UPDATE deployments SET status = $1 WHERE id = $2`,
		string(domain.DeploymentRolledBack), id); err != nil {
		return fmt.Errorf("mark deployment %s rolled back: %w", id, err)
	}
	return nil
}

// LastGoodDeployment returns the newest verified deployment to environment
// of a release that is not bad, other than of release excludeRelease.
func (s *Store) LastGoodDeployment(ctx context.Context, repository, environment, excludeRelease string) (domain.Deployment, error) {
	return s.oneDeployment(ctx, "an earlier verified deployment to "+environment,
		`SELECT `+prefixed("d.", deploymentColumns)+` FROM deployments d JOIN releases r ON r.id = d.release_id
		 WHERE d.repository = $1 AND d.environment = $2 AND d.status = $3 AND r.status <> $4 AND d.release_id <> $5
		 ORDER BY d.created_at DESC, d.id DESC LIMIT 1`,
		repository, environment, string(domain.DeploymentVerified), string(domain.ReleaseBad), excludeRelease)
}

// CurrentDeployment returns the newest verified deployment to environment:
// what runs there now.
func (s *Store) CurrentDeployment(ctx context.Context, repository, environment string) (domain.Deployment, error) {
	return s.oneDeployment(ctx, "a verified deployment to "+environment,
		`SELECT `+deploymentColumns+` FROM deployments WHERE repository = $1 AND environment = $2 AND status = $3
		 ORDER BY created_at DESC, id DESC LIMIT 1`,
		repository, environment, string(domain.DeploymentVerified))
}

// HasDeployments reports whether anything was ever deployed to environment.
func (s *Store) HasDeployments(ctx context.Context, repository, environment string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM deployments WHERE repository = $1 AND environment = $2`,
		repository, environment).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("count deployments to %s: %w", environment, err)
	}
	return n > 0, nil
}

// ListDeployments returns a page of deployments, newest first, fetching
// page.Limit() rows (paging.Cut cuts them).
func (s *Store) ListDeployments(ctx context.Context, f ListFilter, page paging.Page) ([]domain.Deployment, error) {
	after, args := page.Where("created_at", "id", true, 5)
	ds, err := s.queryDeployments(ctx,
		`SELECT `+deploymentColumns+` FROM deployments
		 WHERE ($1 = '' OR repository = $1) AND ($2 = '' OR run_id = $2) AND ($3 = '' OR environment = $3)
		   AND `+after+` ORDER BY created_at DESC, id DESC LIMIT $4`,
		append([]any{f.Repository, f.RunID, f.Environment, page.Limit()}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return ds, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func prefixed(prefix, columns string) string {
	parts := strings.Split(columns, ",")
	for i, p := range parts {
		parts[i] = prefix + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// prunedRelease is a release whose kept artifacts markPruned gave up.
type prunedRelease struct {
	Repository string
	Version    string
}

// markPruned marks pruned, at now, at most limit of the releases whose kept
// artifacts no deploy or rollback needs any more, and returns them. A
// release is kept while any of these holds:
//   - it runs in an environment now (the newest verified deployment
//     there);
//   - it is one of the last keep verified releases of an environment, by
//     when they were verified there (releases that are bad do not count:
//     no rollback goes to them);
//   - it may still be deployed: no release running anywhere is newer, it
//     was made after youngest, a run's release stage that deploys it has
//     not finished, or a deployment of it is in progress;
//   - it has no kept artifact (made before release kept them: the build's
//     objects are fetched for as long as they last).
//
// One statement finds and marks them, and marks only a release not marked
// yet, so two replicas pruning at once mark each release once.
func (s *Store) markPruned(ctx context.Context, keep int, youngest, now time.Time, limit int) ([]prunedRelease, error) {
	out, err := queryAll(ctx, s.db, func(src row) (prunedRelease, error) {
		var r prunedRelease
		return r, src.Scan(&r.Repository, &r.Version)
	}, `WITH verified AS (
		   SELECT d.repository, d.environment, d.release_id, MAX(d.created_at) AS at
		   FROM deployments d JOIN releases v ON v.id = d.release_id
		   WHERE d.status IN ($1, $2) AND v.status <> $3
		   GROUP BY d.repository, d.environment, d.release_id
		 ), last_verified AS (
		   SELECT release_id FROM (
		     SELECT release_id, ROW_NUMBER() OVER (PARTITION BY repository, environment ORDER BY at DESC, release_id DESC) AS n
		     FROM verified) ranked
		   WHERE n <= $4
		 ), running AS (
		   SELECT c.id, c.repository, c.major, c.minor, c.patch FROM releases c WHERE c.id IN (
		     SELECT release_id FROM (
		       SELECT release_id, ROW_NUMBER() OVER (PARTITION BY repository, environment ORDER BY created_at DESC, id DESC) AS n
		       FROM deployments WHERE status = $1) ranked
		     WHERE n = 1)
		 )
		 UPDATE releases SET pruned_at = $5 WHERE pruned_at = 0 AND id IN (
		   SELECT r.id FROM releases r
		   WHERE r.pruned_at = 0 AND r.created_at < $6
		     AND EXISTS (SELECT 1 FROM release_artifacts a WHERE a.release_id = r.id AND a.kept_object <> '')
		     AND r.id NOT IN (SELECT release_id FROM last_verified)
		     AND r.id NOT IN (SELECT id FROM running)
		     AND EXISTS (SELECT 1 FROM running c WHERE c.repository = r.repository
		       AND (c.major > r.major OR (c.major = r.major AND (c.minor > r.minor OR (c.minor = r.minor AND c.patch > r.patch)))))
		     AND NOT EXISTS (SELECT 1 FROM release_runs u WHERE u.release_id = r.id AND u.state <> $7)
		     AND NOT EXISTS (SELECT 1 FROM deployments p WHERE p.release_id = r.id AND p.status IN ($8, $9))
		   ORDER BY r.created_at, r.id LIMIT $10)
		 RETURNING repository, version`,
		string(domain.DeploymentVerified), string(domain.DeploymentRolledBack), string(domain.ReleaseBad), keep,
		now.UnixNano(), youngest.UnixNano(), runFinished,
		string(domain.DeploymentDeploying), string(domain.DeploymentVerifying), limit)
	if err != nil {
		return nil, fmt.Errorf("mark the releases whose artifacts are no longer kept: %w", err)
	}
	return out, nil
}

// keptObject is a release's kept copy of one artifact.
type keptObject struct {
	ReleaseID string
	Name      string
	Object    string
}

// prunedObjects returns at most limit of the kept copies of pruned
// releases' artifacts that are still there.
func (s *Store) prunedObjects(ctx context.Context, limit int) ([]keptObject, error) {
	out, err := queryAll(ctx, s.db, func(src row) (keptObject, error) {
		var o keptObject
		return o, src.Scan(&o.ReleaseID, &o.Name, &o.Object)
	}, `SELECT a.release_id, a.name, a.kept_object FROM release_artifacts a JOIN releases r ON r.id = a.release_id
		 WHERE r.pruned_at <> 0 AND a.kept_object <> '' ORDER BY a.release_id, a.name LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list the pruned releases' kept artifacts: %w", err)
	}
	return out, nil
}

// forgetKeptObject records that o was deleted.
func (s *Store) forgetKeptObject(ctx context.Context, o keptObject) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE release_artifacts SET kept_object = '' WHERE release_id = $1 AND name = $2`,
		o.ReleaseID, o.Name); err != nil {
		return fmt.Errorf("forget the kept artifact %s of release %s: %w", o.Name, o.ReleaseID, err)
	}
	return nil
}
