package source

import (
	"context"
	"database/sql"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/sqldb"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are the source service's own tables.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("source", migrationFiles)
}

// Store is the source service's database: repositories, runs with their
// stages, webhook deliveries, and the events outbox.
type Store struct {
	db *sqldb.DB
}

// NewStore keeps the service's records in db, which has the Migrations
// (servicekit opens and migrates it on start).
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

// InTx runs fn in a transaction.
func (s *Store) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.db.InTx(ctx, fn)
}

// Lock takes the lock named key that every replica sharing the database
// respects (sqldb.DB.Lock).
func (s *Store) Lock(ctx context.Context, key string) (func(), error) {
	return s.db.Lock(ctx, key)
}

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// --- repositories ---

const repositoryColumns = `id, name, url, branch, webhook_secret, last_seen_commit, created_at, forge_kind, forge_url, forge_project, pull_request_secrets, fork_pull_requests, forge_releases`

// credentialColumns say whether the repository table names has the
// secrets of an HTTPS token and of an SSH key.
func credentialColumns(table string) string {
	has := func(name string) string {
		return `EXISTS (SELECT 1 FROM secrets c WHERE c.repository_id = ` + table + `.id AND c.name = '` + name + `')`
	}
	return `, ` + has(gitauth.TokenSecret) + `, ` + has(gitauth.SSHKeySecret)
}

// forgeTokenColumn says whether the repository table names has its forge
// token.
func forgeTokenColumn(table string) string {
	return `, EXISTS (SELECT 1 FROM secrets c WHERE c.repository_id = ` + table + `.id AND c.name = '` + forge.TokenSecret + `')`
}

// repositorySelect is what a query of repositories selects.
var repositorySelect = repositoryColumns + credentialColumns("repositories") + forgeTokenColumn("repositories")

func scanRepository(row interface{ Scan(...any) error }) (domain.Repository, error) {
	var r domain.Repository
	var created int64
	var hasToken, hasKey bool
	var forgeKind string
	var prSecrets, forks, releases int
	err := row.Scan(&r.ID, &r.Name, &r.URL, &r.Branch, &r.WebhookSecret, &r.LastSeenCommit, &created,
		&forgeKind, &r.Forge.URL, &r.Forge.Project, &prSecrets, &forks, &releases, &hasToken, &hasKey, &r.HasForgeToken)
	r.PullRequestSecrets, r.ForkPullRequests, r.ForgeReleases = prSecrets == 1, forks == 1, releases == 1
	r.Forge.Kind = forge.Kind(forgeKind)
	r.CreatedAt = sqldb.Time(created)
	r.GitCredential = gitauth.KindFor(r.URL, hasToken, hasKey)
	return r, err
}

// Repository finds a repository by id or name.
func (s *Store) Repository(ctx context.Context, idOrName string) (domain.Repository, error) {
	return repositoryByRef(ctx, s.db, idOrName)
}

func repositoryByRef(ctx context.Context, q querier, idOrName string) (domain.Repository, error) {
	r, err := scanRepository(q.QueryRowContext(ctx,
		`SELECT `+repositorySelect+` FROM repositories WHERE id = $1 OR name = $1 ORDER BY (CASE WHEN id = $1 THEN 0 ELSE 1 END) LIMIT 1`, idOrName))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("repository %q: %w", idOrName, apierror.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read repository %q: %w", idOrName, err)
	}
	return r, nil
}

// RepositoryByName finds a repository by name (only).
func (s *Store) RepositoryByName(ctx context.Context, name string) (domain.Repository, error) {
	r, err := scanRepository(s.db.QueryRowContext(ctx, `SELECT `+repositorySelect+` FROM repositories WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("repository %q: %w", name, apierror.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read repository %q: %w", name, err)
	}
	return r, nil
}

// Repositories lists every repository by name.
func (s *Store) Repositories(ctx context.Context) ([]domain.Repository, error) {
	return s.queryRepositories(ctx, `SELECT `+repositorySelect+` FROM repositories ORDER BY name`)
}

// ListRepositories lists a page of repositories by name: page.Limit() of
// them at most, after the name page.After names, only those named in only
// when it is not nil.
func (s *Store) ListRepositories(ctx context.Context, only []string, page paging.Page) ([]domain.Repository, error) {
	after := ""
	if page.After != nil {
		after = page.After.ID
	}
	query := `SELECT ` + repositorySelect + ` FROM repositories WHERE name > $1`
	args := []any{after}
	if only != nil {
		if len(only) == 0 {
			return nil, nil
		}
		marks := make([]string, len(only))
		for i, name := range only {
			args = append(args, name)
			marks[i] = fmt.Sprintf("$%d", len(args))
		}
		query += ` AND name IN (` + strings.Join(marks, ", ") + `)`
	}
	args = append(args, page.Limit())
	return s.queryRepositories(ctx, query+fmt.Sprintf(` ORDER BY name LIMIT $%d`, len(args)), args...)
}

func (s *Store) queryRepositories(ctx context.Context, query string, args ...any) ([]domain.Repository, error) {
	rows, err := s.db.Reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	defer rows.Close()
	var out []domain.Repository
	for rows.Next() {
		r, err := scanRepository(rows)
		if err != nil {
			return nil, fmt.Errorf("list repositories: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	return out, nil
}

// errNameTaken: insertRepository found the name in use.
var errNameTaken = errors.New("repository name taken")

func insertRepository(ctx context.Context, tx *sql.Tx, r domain.Repository) error {
	_, err := tx.ExecContext(ctx,
		`INSERT INTO repositories (`+repositoryColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		r.ID, r.Name, r.URL, r.Branch, r.WebhookSecret, r.LastSeenCommit, sqldb.Nanos(r.CreatedAt),
		string(r.Forge.Kind), r.Forge.URL, r.Forge.Project, boolInt(r.PullRequestSecrets), boolInt(r.ForkPullRequests), boolInt(r.ForgeReleases))
	if sqldb.IsUniqueViolation(err) {
		return errNameTaken
	}
	if err != nil {
		return fmt.Errorf("insert repository %q: %w", r.Name, err)
	}
	return nil
}

// lastSeen reads the watched branch's head as last recorded.
func lastSeen(ctx context.Context, tx *sql.Tx, repoID string) (string, error) {
	var commit string
	if err := tx.QueryRowContext(ctx, `SELECT last_seen_commit FROM repositories WHERE id = $1`, repoID).Scan(&commit); err != nil {
		return "", fmt.Errorf("read last seen commit: %w", err)
	}
	return commit, nil
}

// setLastSeen records the watched branch's head. With ifWas set, it only
// does so when the stored value is still *ifWas, and reports whether it did.
func setLastSeen(ctx context.Context, tx *sql.Tx, repoID, commit string, ifWas *string) (bool, error) {
	var res sql.Result
	var err error
	if ifWas == nil {
		res, err = tx.ExecContext(ctx, `UPDATE repositories SET last_seen_commit = $1 WHERE id = $2`, commit, repoID)
	} else {
		res, err = tx.ExecContext(ctx, `UPDATE repositories SET last_seen_commit = $1 WHERE id = $2 AND last_seen_commit = $3`, commit, repoID, *ifWas)
	}
	if err != nil {
		return false, fmt.Errorf("record last seen commit: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("record last seen commit: %w", err)
	}
	return n == 1, nil
}

// --- runs ---

var runColumns = `r.id, r.repository_id, p.name, p.url, p.branch, r.commit_sha, r.ref, r.branch, r.run_trigger, r.status,
	r.created_at, r.ended_at, r.failure_reason, r.release_version, r.commit_message, r.pipeline, r.version,
	r.cancel_requested_at, r.cancel_requested_by, r.rerun_of, r.rerun_from, r.changes,
	r.admitted_at, r.concurrency_group, r.concurrency_limit, r.pull_request, r.pull_request_fork, r.pipelines` + credentialColumns("p")

const runFrom = ` FROM runs r JOIN repositories p ON p.id = r.repository_id`

func scanRun(row interface{ Scan(...any) error }) (domain.Run, error) {
	var r domain.Run
	var created, ended, cancelRequested, admitted int64
	var trigger, status, pipeline, changes, pipelines string
	var hasToken, hasKey bool
	var fork int
	err := row.Scan(&r.ID, &r.RepositoryID, &r.Repository, &r.RepositoryURL, &r.RepositoryBranch, &r.Commit, &r.Ref, &r.Branch, &trigger, &status,
		&created, &ended, &r.FailureReason, &r.ReleaseVersion, &r.CommitMessage, &pipeline, &r.Version,
		&cancelRequested, &r.CancelRequestedBy, &r.RerunOf, &r.RerunFrom, &changes,
		&admitted, &r.ConcurrencyGroup, &r.ConcurrencyLimit, &r.PullRequest, &fork, &pipelines, &hasToken, &hasKey)
	if err != nil {
		return r, err
	}
	if r.Holds, err = decodeHolds(pipelines); err != nil {
		return r, fmt.Errorf("run %s: %w", r.ID, err)
	}
	r.PullRequestFromFork = fork == 1
	r.GitCredential = gitauth.KindFor(r.RepositoryURL, hasToken, hasKey)
	r.Trigger, r.Status = domain.Trigger(trigger), domain.RunStatus(status)
	r.CreatedAt, r.EndedAt, r.CancelRequestedAt = sqldb.Time(created), sqldb.Time(ended), sqldb.Time(cancelRequested)
	r.AdmittedAt = sqldb.Time(admitted)
	if pipeline != "" {
		r.Pipeline = &sourcev1.Pipeline{}
		if err := protojson.Unmarshal([]byte(pipeline), r.Pipeline); err != nil {
			return r, fmt.Errorf("run %s: stored pipeline: %w", r.ID, err)
		}
	}
	if changes != "" {
		r.Changes = &sourcev1.Changes{}
		if err := protojson.Unmarshal([]byte(changes), r.Changes); err != nil {
			return r, fmt.Errorf("run %s: stored changes: %w", r.ID, err)
		}
	}
	return r, nil
}

func insertRun(ctx context.Context, tx *sql.Tx, r domain.Run) error {
	pipeline, changes := "", ""
	if r.Pipeline != nil {
		b, err := protojson.Marshal(r.Pipeline)
		if err != nil {
			return fmt.Errorf("encode pipeline: %w", err)
		}
		pipeline = string(b)
	}
	if r.Changes != nil {
		b, err := protojson.Marshal(r.Changes)
		if err != nil {
			return fmt.Errorf("encode changes: %w", err)
		}
		changes = string(b)
	}
	holds, err := encodeHolds(r.Holds)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO runs (id, repository_id, commit_sha, ref, branch, run_trigger, status,
		created_at, ended_at, failure_reason, release_version, commit_message, pipeline, version, rerun_of, rerun_from, changes,
		admitted_at, concurrency_group, concurrency_limit, pull_request, pull_request_fork, pipelines)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15, $16, $17, $18, $19, $20, $21, $22)`,
		r.ID, r.RepositoryID, r.Commit, r.Ref, r.Branch, string(r.Trigger), string(r.Status),
		sqldb.Nanos(r.CreatedAt), sqldb.Nanos(r.EndedAt), sqldb.Text(r.FailureReason), r.ReleaseVersion, sqldb.Text(r.CommitMessage), pipeline,
		r.RerunOf, r.RerunFrom, changes, sqldb.Nanos(r.AdmittedAt), r.ConcurrencyGroup, r.ConcurrencyLimit,
		r.PullRequest, boolInt(r.PullRequestFromFork), holds)
	if err != nil {
		return fmt.Errorf("insert run: %w", err)
	}
	for i, st := range r.Stages {
		_, err := tx.ExecContext(ctx, `INSERT INTO run_stages (run_id, name, position, status, started_at, ended_at,
			reason, failed_step, exit_code, last_log_lines, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
			r.ID, st.Name, i, string(st.Status), sqldb.Nanos(st.StartedAt), sqldb.Nanos(st.EndedAt),
			st.Reason, st.FailedStep, st.ExitCode, sqldb.StringList(st.LastLogLines), st.Detail)
		if err != nil {
			return fmt.Errorf("insert stage %s: %w", st.Name, err)
		}
	}
	return publishStatuses(ctx, tx, r)
}

// Run reads one run with its stages.
func (s *Store) Run(ctx context.Context, id string) (domain.Run, error) {
	return runByID(ctx, s.db.Reader(), id)
}

func runByID(ctx context.Context, q querier, id string) (domain.Run, error) {
	r, err := scanRun(q.QueryRowContext(ctx, `SELECT `+runColumns+runFrom+` WHERE r.id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("run %q: %w", id, apierror.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read run %q: %w", id, err)
	}
	runs := []*domain.Run{&r}
	if err := loadStages(ctx, q, runs); err != nil {
		return r, err
	}
	return r, nil
}

// lockRun reads a run for update: the no-op UPDATE takes the row lock in
// PostgreSQL (SQLite transactions are serialised anyway), so concurrent
// folds of one run's events apply one after the other.
func lockRun(ctx context.Context, tx *sql.Tx, id string) (domain.Run, error) {
	if _, err := tx.ExecContext(ctx, `UPDATE runs SET version = version WHERE id = $1`, id); err != nil {
		return domain.Run{}, fmt.Errorf("lock run %q: %w", id, err)
	}
	return runByID(ctx, tx, id)
}

// updateRun stores a folded run and its stages and bumps its version.
func updateRun(ctx context.Context, tx *sql.Tx, r domain.Run) error {
	_, err := tx.ExecContext(ctx, `UPDATE runs SET status = $1, ended_at = $2, failure_reason = $3, release_version = $4,
		version = version + 1 WHERE id = $5`,
		string(r.Status), sqldb.Nanos(r.EndedAt), r.FailureReason, r.ReleaseVersion, r.ID)
	if err != nil {
		return fmt.Errorf("update run %s: %w", r.ID, err)
	}
	for _, st := range r.Stages {
		_, err := tx.ExecContext(ctx, `UPDATE run_stages SET status = $1, started_at = $2, ended_at = $3, reason = $4,
			failed_step = $5, exit_code = $6, last_log_lines = $7, detail = $8 WHERE run_id = $9 AND name = $10`,
			string(st.Status), sqldb.Nanos(st.StartedAt), sqldb.Nanos(st.EndedAt), st.Reason,
			st.FailedStep, st.ExitCode, sqldb.StringList(st.LastLogLines), st.Detail, r.ID, st.Name)
		if err != nil {
			return fmt.Errorf("update stage %s of run %s: %w", st.Name, r.ID, err)
		}
	}
	return publishStatuses(ctx, tx, r)
}

// requestCancel records that someone asked for run r to be cancelled
// (r.CancelRequestedAt and By) and bumps its version.
func requestCancel(ctx context.Context, tx *sql.Tx, r domain.Run) error {
	_, err := tx.ExecContext(ctx, `UPDATE runs SET cancel_requested_at = $1, cancel_requested_by = $2, version = version + 1 WHERE id = $3`,
		sqldb.Nanos(r.CancelRequestedAt), r.CancelRequestedBy, r.ID)
	if err != nil {
		return fmt.Errorf("record the cancel request of run %s: %w", r.ID, err)
	}
	return nil
}

// --- admission ---

// maxWaitingPerGroup bounds the waiting runs of one concurrency group of a
// repository (or of its runs of no group) that an admission pass
// considers, the oldest: no pass admits more (a group's limit is at most
// 100), and the rest wait for a later pass. Another group's runs are read
// however many wait in a full one.
const maxWaitingPerGroup = 100

// admissionState reads what Admit decides on: the waiting runs, oldest
// first, and the active runs by group.
func admissionState(ctx context.Context, tx *sql.Tx) ([]domain.WaitingRun, []domain.ActiveRuns, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, repository_id, concurrency_group, concurrency_limit FROM (
			SELECT id, repository_id, concurrency_group, concurrency_limit, created_at,
				ROW_NUMBER() OVER (PARTITION BY repository_id, concurrency_group ORDER BY created_at, id) AS place
			FROM runs WHERE admitted_at = 0 AND status = 'queued') w
		WHERE place <= $1 ORDER BY created_at, id`, maxWaitingPerGroup)
	if err != nil {
		return nil, nil, fmt.Errorf("read the waiting runs: %w", err)
	}
	waiting, err := sqldb.Collect(rows, func(row *sql.Rows) (w domain.WaitingRun, err error) {
		return w, row.Scan(&w.ID, &w.RepositoryID, &w.Group, &w.GroupLimit)
	})
	if err != nil || len(waiting) == 0 {
		return nil, nil, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT repository_id, concurrency_group, COUNT(*) FROM runs
		WHERE status IN ('queued', 'running') AND admitted_at > 0 GROUP BY repository_id, concurrency_group`)
	if err != nil {
		return nil, nil, fmt.Errorf("count the active runs: %w", err)
	}
	active, err := sqldb.Collect(rows, func(row *sql.Rows) (a domain.ActiveRuns, err error) {
		return a, row.Scan(&a.RepositoryID, &a.Group, &a.Count)
	})
	return waiting, active, err
}

// admitRun records that run r (waiting) may start, at r.AdmittedAt, and
// bumps its version. It reports false when r is no longer waiting.
func admitRun(ctx context.Context, tx *sql.Tx, r domain.Run) (bool, error) {
	res, err := tx.ExecContext(ctx, `UPDATE runs SET admitted_at = $1, version = version + 1
		WHERE id = $2 AND admitted_at = 0 AND status = 'queued'`, sqldb.Nanos(r.AdmittedAt), r.ID)
	if err != nil {
		return false, fmt.Errorf("admit run %s: %w", r.ID, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// supersededRuns lists the open runs of group of a repository made before
// the run before (by creation time, then id).
func supersededRuns(ctx context.Context, tx *sql.Tx, repoID, group string, before domain.Run) ([]openRun, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, pipelines FROM runs WHERE repository_id = $1 AND concurrency_group = $2
		AND status IN ('queued', 'running') AND id <> $3 AND (created_at < $4 OR (created_at = $4 AND id < $3))
		ORDER BY created_at, id`, repoID, group, before.ID, sqldb.Nanos(before.CreatedAt))
	if err != nil {
		return nil, fmt.Errorf("read the runs run %s supersedes: %w", before.ID, err)
	}
	return sqldb.Collect(rows, scanOpenRun)
}

// newerOpenRuns are the open runs of group of a repository made after the
// run after, newest first.
func newerOpenRuns(ctx context.Context, tx *sql.Tx, repoID, group string, after domain.Run) ([]openRun, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, pipelines FROM runs WHERE repository_id = $1 AND concurrency_group = $2
		AND status IN ('queued', 'running') AND id <> $3 AND (created_at > $4 OR (created_at = $4 AND id > $3))
		ORDER BY created_at DESC, id DESC`, repoID, group, after.ID, sqldb.Nanos(after.CreatedAt))
	if err != nil {
		return nil, fmt.Errorf("read the runs newer than run %s: %w", after.ID, err)
	}
	return sqldb.Collect(rows, scanOpenRun)
}

// openRun is a run of a concurrency group as superseding sees it.
type openRun struct {
	ID    string
	Holds []string
}

func scanOpenRun(row *sql.Rows) (openRun, error) {
	var r openRun
	var holds string
	if err := row.Scan(&r.ID, &holds); err != nil {
		return r, err
	}
	var err error
	r.Holds, err = decodeHolds(holds)
	if err != nil {
		return r, fmt.Errorf("run %s: %w", r.ID, err)
	}
	return r, nil
}

// encodeHolds is the column pipelines of Run.Holds.
func encodeHolds(holds []string) (string, error) {
	if len(holds) == 0 {
		return "", nil
	}
	b, err := json.Marshal(holds)
	if err != nil {
		return "", fmt.Errorf("encode the run's pipelines: %w", err)
	}
	return string(b), nil
}

func decodeHolds(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var holds []string
	if err := json.Unmarshal([]byte(s), &holds); err != nil {
		return nil, fmt.Errorf("stored pipelines: %w", err)
	}
	return holds, nil
}

// Runs lists a page of runs newest first, of one repository or (repoID "")
// of all: page.Limit() of them at most, after page.After.
func (s *Store) Runs(ctx context.Context, repoID string, pullRequest int64, page paging.Page) ([]domain.Run, error) {
	query := `SELECT ` + runColumns + runFrom + ` WHERE `
	args := []any{}
	if repoID != "" {
		query += `r.repository_id = $1 AND `
		args = append(args, repoID)
	}
	if pullRequest > 0 {
		args = append(args, pullRequest)
		query += fmt.Sprintf(`r.pull_request = $%d AND `, len(args))
	}
	after, afterArgs := page.Where("r.created_at", "r.id", true, len(args)+1)
	args = append(args, afterArgs...)
	query += after + fmt.Sprintf(` ORDER BY r.created_at DESC, r.id DESC LIMIT $%d`, len(args)+1)
	args = append(args, page.Limit())
	out, err := scanRuns(ctx, s.db.Reader(), query, args...)
	if err != nil {
		return nil, err
	}
	ptrs := make([]*domain.Run, len(out))
	for i := range out {
		ptrs[i] = &out[i]
	}
	if err := loadStages(ctx, s.db.Reader(), ptrs); err != nil {
		return nil, err
	}
	return out, nil
}

// scanRuns runs a query for runs (without their stages).
func scanRuns(ctx context.Context, q querier, query string, args ...any) ([]domain.Run, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	var out []domain.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// loadStages fills in the stages of runs.
func loadStages(ctx context.Context, q querier, runs []*domain.Run) error {
	if len(runs) == 0 {
		return nil
	}
	byID := map[string]*domain.Run{}
	placeholders := make([]string, len(runs))
	args := make([]any, len(runs))
	for i, r := range runs {
		byID[r.ID] = r
		r.Stages = nil
		placeholders[i] = fmt.Sprintf("$%d", i+1)
		args[i] = r.ID
	}
	rows, err := q.QueryContext(ctx, `SELECT run_id, name, status, started_at, ended_at, reason, failed_step, exit_code,
		last_log_lines, detail FROM run_stages WHERE run_id IN (`+strings.Join(placeholders, ", ")+`) ORDER BY run_id, position`, args...)
	if err != nil {
		return fmt.Errorf("read stages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var runID, status string
		var started, ended int64
		var st domain.Stage
		if err := rows.Scan(&runID, &st.Name, &status, &started, &ended, &st.Reason, &st.FailedStep, &st.ExitCode, (*sqldb.StringList)(&st.LastLogLines), &st.Detail); err != nil {
			return fmt.Errorf("read stages: %w", err)
		}
		st.Status = domain.StageStatus(status)
		st.StartedAt, st.EndedAt = sqldb.Time(started), sqldb.Time(ended)
		if len(st.LastLogLines) == 0 {
			st.LastLogLines = nil
		}
		if r := byID[runID]; r != nil {
			r.Stages = append(r.Stages, st)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read stages: %w", err)
	}
	return nil
}

// --- the commits that have a run ---

// errAlreadyRun: recordBranchCommit found that the commit has a run on the
// branch, and the caller's transaction made none.
var errAlreadyRun = errors.New("the commit already has a run on the branch")

// recordBranchCommit records, in the transaction that makes run r, that
// its commit has a run on its branch. A push or the poll (again false)
// makes no second run of a commit: when the row is there it returns
// errAlreadyRun. A manual trigger (again true) may run a commit again; its
// run becomes the one recorded.
func recordBranchCommit(ctx context.Context, tx *sql.Tx, r domain.Run, again bool) error {
	query := `INSERT INTO branch_commits (repository_id, branch, commit_sha, run_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repository_id, branch, commit_sha) DO NOTHING`
	if again {
		query = `INSERT INTO branch_commits (repository_id, branch, commit_sha, run_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (repository_id, branch, commit_sha) DO UPDATE SET run_id = excluded.run_id`
	}
	res, err := tx.ExecContext(ctx, query, r.RepositoryID, domain.CommitKey(r.Branch, r.Ref), r.Commit, r.ID)
	if err != nil {
		return fmt.Errorf("record the run of commit %s: %w", r.Commit, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("record the run of commit %s: %w", r.Commit, err)
	}
	if n == 0 {
		return errAlreadyRun
	}
	return nil
}

// LastBranchCommit is the commit of the newest run of a repository's
// branch; a branch without runs is not found.
func (s *Store) LastBranchCommit(ctx context.Context, repoID, branch string) (string, error) {
	var commit string
	err := s.db.QueryRowContext(ctx, `SELECT commit_sha FROM runs WHERE repository_id = $1 AND branch = $2 ORDER BY created_at DESC, id DESC LIMIT 1`,
		repoID, branch).Scan(&commit)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("last run of %q: %w", branch, apierror.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("last run of %q: %w", branch, err)
	}
	return commit, nil
}

// CommitRun returns the latest run of commit on branch of a repository
// (key: domain.CommitKey); a commit without one is not found.
func (s *Store) CommitRun(ctx context.Context, repoID, branch, commit string) (string, error) {
	var runID string
	err := s.db.QueryRowContext(ctx, `SELECT run_id FROM branch_commits WHERE repository_id = $1 AND branch = $2 AND commit_sha = $3`,
		repoID, branch, commit).Scan(&runID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("run of commit %s on %q: %w", commit, branch, apierror.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read the run of commit %s: %w", commit, err)
	}
	return runID, nil
}

// --- webhook deliveries ---

// DeliveryRun returns the run a webhook delivery made; a delivery not
// seen before is not found.
func (s *Store) DeliveryRun(ctx context.Context, repoID, deliveryID string) (string, error) {
	var runID string
	err := s.db.QueryRowContext(ctx, `SELECT run_id FROM webhook_deliveries WHERE repository_id = $1 AND delivery_id = $2`,
		repoID, deliveryID).Scan(&runID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("webhook delivery %q: %w", deliveryID, apierror.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read webhook delivery: %w", err)
	}
	return runID, nil
}

// errDuplicateDelivery: insertDelivery found the delivery recorded.
var errDuplicateDelivery = errors.New("duplicate webhook delivery")

func insertDelivery(ctx context.Context, tx *sql.Tx, repoID, deliveryID, runID string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (repository_id, delivery_id, run_id, received_at) VALUES ($1, $2, $3, $4)`,
		repoID, deliveryID, runID, sqldb.Nanos(at))
	if sqldb.IsUniqueViolation(err) {
		return errDuplicateDelivery
	}
	if err != nil {
		return fmt.Errorf("record webhook delivery: %w", err)
	}
	return nil
}

// --- tokens ---

const tokenColumns = `id, name, role, repositories, hash, created_at, created_by, expires_at, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (domain.Token, error) {
	var t domain.Token
	var created, expires, revoked int64
	err := row.Scan(&t.ID, &t.Name, &t.Role, (*sqldb.StringList)(&t.Repositories), &t.Hash, &created, &t.CreatedBy, &expires, &revoked)
	t.CreatedAt = sqldb.Time(created)
	if expires != 0 {
		t.ExpiresAt = sqldb.Time(expires)
	}
	if revoked != 0 {
		t.RevokedAt = sqldb.Time(revoked)
	}
	return t, err
}

func optionalNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return sqldb.Nanos(t)
}

// errTokenExists: InsertToken found the id or the hash in use.
var errTokenExists = errors.New("token exists")

// InsertToken stores a new token, with the audit entry of the call that
// made it.
func (s *Store) InsertToken(ctx context.Context, t domain.Token) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			t.ID, t.Name, t.Role, sqldb.StringList(t.Repositories), t.Hash, sqldb.Nanos(t.CreatedAt), t.CreatedBy,
			optionalNanos(t.ExpiresAt), optionalNanos(t.RevokedAt))
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Target{ID: t.ID})
	})
	if sqldb.IsUniqueViolation(err) {
		return errTokenExists
	}
	if err != nil {
		return fmt.Errorf("insert token %s: %w", t.ID, err)
	}
	return nil
}

// Token finds a token by id.
func (s *Store) Token(ctx context.Context, id string) (domain.Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("token %q: %w", id, apierror.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("read token %q: %w", id, err)
	}
	return t, nil
}

// TokenByHash finds a token by its secret's hash.
func (s *Store) TokenByHash(ctx context.Context, hash string) (domain.Token, bool, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, false, nil
	}
	if err != nil {
		return t, false, fmt.Errorf("read token: %w", err)
	}
	return t, true, nil
}

// RevokeToken marks a token revoked at now, unless it already is, with the
// audit entry of the call.
func (s *Store) RevokeToken(ctx context.Context, id string, now time.Time) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at = 0`, sqldb.Nanos(now), id); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Target{ID: id})
	})
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// ListTokens lists a page of tokens newest first: page.Limit() at most,
// revoked ones only when asked.
func (s *Store) ListTokens(ctx context.Context, includeRevoked bool, page paging.Page) ([]domain.Token, error) {
	query := `SELECT ` + tokenColumns + ` FROM tokens WHERE `
	if !includeRevoked {
		query += `revoked_at = 0 AND `
	}
	after, args := page.Where("created_at", "id", true, 1)
	query += after + fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args)+1)
	return s.queryTokens(ctx, query, append(args, page.Limit())...)
}

// UnrevokedTokens are the tokens not revoked (some may have expired).
func (s *Store) UnrevokedTokens(ctx context.Context) ([]domain.Token, error) {
	return s.queryTokens(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE revoked_at = 0 ORDER BY id`)
}

func (s *Store) queryTokens(ctx context.Context, query string, args ...any) ([]domain.Token, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []domain.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// --- secrets ---

const secretColumns = `s.repository_id, COALESCE(r.name, ''), s.name, s.ciphertext, s.key_id, s.created_at, s.updated_at, s.updated_by`

const secretFrom = ` FROM secrets s LEFT JOIN repositories r ON r.id = s.repository_id `

func scanSecret(row interface{ Scan(...any) error }) (domain.Secret, error) {
	var sec domain.Secret
	var ciphertext string
	var created, updated int64
	err := row.Scan(&sec.RepositoryID, &sec.Repository, &sec.Name, &ciphertext, &sec.KeyID, &created, &updated, &sec.UpdatedBy)
	if err != nil {
		return sec, err
	}
	sec.CreatedAt, sec.UpdatedAt = sqldb.Time(created), sqldb.Time(updated)
	sec.Ciphertext, err = base64.StdEncoding.DecodeString(ciphertext)
	if err != nil {
		return sec, fmt.Errorf("secret %s: stored ciphertext: %w", sec.Name, err)
	}
	return sec, nil
}

// PutSecret creates or replaces a secret, keeping its creation time. It
// refuses a new secret beyond domain.MaxSecretsPerScope in its scope.
func (s *Store) PutSecret(ctx context.Context, sec domain.Secret) (domain.Secret, error) {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := putSecret(ctx, tx, sec); err != nil {
			return err
		}
		// The entry names the secret, never its value.
		return audit.Record(ctx, tx, audit.Target{Repository: sec.Repository, ID: sec.Name})
	})
	if err != nil {
		return domain.Secret{}, err
	}
	return s.Secret(ctx, sec.RepositoryID, sec.Name)
}

func putSecret(ctx context.Context, tx *sql.Tx, sec domain.Secret) error {
	var count int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM secrets WHERE repository_id = $1 AND name <> $2`, sec.RepositoryID, sec.Name).Scan(&count); err != nil {
		return fmt.Errorf("count secrets: %w", err)
	}
	if count >= domain.MaxSecretsPerScope {
		return fmt.Errorf("%s has %d secrets, the most it may have: %w", scopeName(sec), count, apierror.ErrFailedPrecondition)
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO secrets (repository_id, name, ciphertext, key_id, created_at, updated_at, updated_by)
		VALUES ($1, $2, $3, $4, $5, $5, $6)
		ON CONFLICT (repository_id, name) DO UPDATE SET ciphertext = excluded.ciphertext, key_id = excluded.key_id,
			updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		sec.RepositoryID, sec.Name, base64.StdEncoding.EncodeToString(sec.Ciphertext), sec.KeyID, sqldb.Nanos(sec.UpdatedAt), sec.UpdatedBy)
	if err != nil {
		return fmt.Errorf("store secret %s: %w", sec.Name, err)
	}
	return nil
}

// PutSecretTx is PutSecret in tx (a repository registered with its
// credential).
func (s *Store) PutSecretTx(ctx context.Context, tx *sql.Tx, sec domain.Secret) error {
	return putSecret(ctx, tx, sec)
}

func scopeName(sec domain.Secret) string {
	if sec.RepositoryID == "" {
		return "the platform"
	}
	return fmt.Sprintf("repository %q", sec.Repository)
}

// Secret finds one secret.
func (s *Store) Secret(ctx context.Context, repositoryID, name string) (domain.Secret, error) {
	sec, err := scanSecret(s.db.QueryRowContext(ctx, `SELECT `+secretColumns+secretFrom+`WHERE s.repository_id = $1 AND s.name = $2`, repositoryID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return sec, fmt.Errorf("secret %q: %w", name, apierror.ErrNotFound)
	}
	if err != nil {
		return sec, fmt.Errorf("read secret %q: %w", name, err)
	}
	return sec, nil
}

// Secrets lists a scope's secrets by name.
func (s *Store) Secrets(ctx context.Context, repositoryID string) ([]domain.Secret, error) {
	return s.querySecrets(ctx, `SELECT `+secretColumns+secretFrom+`WHERE s.repository_id = $1 ORDER BY s.name`, repositoryID)
}

// SecretsNotUnder lists every secret encrypted with another key than keyID.
func (s *Store) SecretsNotUnder(ctx context.Context, keyID string) ([]domain.Secret, error) {
	return s.querySecrets(ctx, `SELECT `+secretColumns+secretFrom+`WHERE s.key_id <> $1 ORDER BY s.repository_id, s.name`, keyID)
}

func (s *Store) querySecrets(ctx context.Context, query string, args ...any) ([]domain.Secret, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []domain.Secret
	for rows.Next() {
		sec, err := scanSecret(rows)
		if err != nil {
			return nil, fmt.Errorf("list secrets: %w", err)
		}
		out = append(out, sec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	return out, nil
}

// Rekey replaces old's ciphertext and key with renewed's if the row still
// holds old's ciphertext (so a SetSecret in between, on any replica, wins);
// it reports whether it did.
func (s *Store) Rekey(ctx context.Context, renewed, old domain.Secret) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE secrets SET ciphertext = $1, key_id = $2 WHERE repository_id = $3 AND name = $4 AND ciphertext = $5`,
		base64.StdEncoding.EncodeToString(renewed.Ciphertext), renewed.KeyID, old.RepositoryID, old.Name, base64.StdEncoding.EncodeToString(old.Ciphertext))
	if err != nil {
		return false, fmt.Errorf("re-encrypt secret %s: %w", old.Name, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DeleteSecret removes a secret, with the audit entry of the call.
func (s *Store) DeleteSecret(ctx context.Context, repositoryID, name string) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE repository_id = $1 AND name = $2`, repositoryID, name)
		if err != nil {
			return fmt.Errorf("delete secret %s: %w", name, err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return fmt.Errorf("secret %q: %w", name, apierror.ErrNotFound)
		}
		return audit.Record(ctx, tx, audit.Target{ID: name})
	})
}

const auditColumns = `id, time, service, procedure, action, actor_kind, actor_id, actor_name, actor_role, repository, target, outcome, request_id`

// InsertAuditEntry keeps an audit entry, once per id.
func (s *Store) InsertAuditEntry(ctx context.Context, e domain.AuditEntry) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit_log (`+auditColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (id) DO NOTHING`,
		e.ID, sqldb.Nanos(e.Time), e.Service, e.Procedure, e.Action, e.ActorKind, e.ActorID, e.ActorName, e.ActorRole,
		e.Repository, e.Target, e.Outcome, e.RequestID)
	if err != nil {
		return fmt.Errorf("keep audit entry %s: %w", e.ID, err)
	}
	return nil
}

// ListAuditEntries lists a page of the entries f keeps, newest first:
// page.Limit() at most, after page.After.
func (s *Store) ListAuditEntries(ctx context.Context, f domain.AuditFilter, page paging.Page) ([]domain.AuditEntry, error) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Repository != "" {
		conds = append(conds, `repository = `+arg(f.Repository))
	}
	if f.Only != nil {
		if len(f.Only) == 0 {
			return nil, nil
		}
		in := make([]string, len(f.Only))
		for i, r := range f.Only {
			in[i] = arg(r)
		}
		conds = append(conds, `repository IN (`+strings.Join(in, ", ")+`)`)
	}
	if f.Actor != "" {
		a := arg(f.Actor)
		conds = append(conds, `(actor_id = `+a+` OR actor_name = `+a+`)`)
	}
	switch {
	case strings.HasSuffix(f.Action, "."):
		// A prefix: the column starts with it (no LIKE, so no wildcard in
		// the filter means anything).
		conds = append(conds, `SUBSTR(action, 1, `+arg(len(f.Action))+`) = `+arg(f.Action))
	case f.Action != "":
		conds = append(conds, `action = `+arg(f.Action))
	}
	if !f.Since.IsZero() {
		conds = append(conds, `time >= `+arg(sqldb.Nanos(f.Since)))
	}
	if !f.Until.IsZero() {
		conds = append(conds, `time < `+arg(sqldb.Nanos(f.Until)))
	}
	after, afterArgs := page.Where("time", "id", true, len(args)+1)
	args = append(args, afterArgs...)
	conds = append(conds, after)
	query := `SELECT ` + auditColumns + ` FROM audit_log WHERE ` + strings.Join(conds, ` AND `) +
		` ORDER BY time DESC, id DESC LIMIT ` + arg(page.Limit())
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	defer rows.Close()
	var out []domain.AuditEntry
	for rows.Next() {
		var e domain.AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Service, &e.Procedure, &e.Action, &e.ActorKind, &e.ActorID, &e.ActorName, &e.ActorRole,
			&e.Repository, &e.Target, &e.Outcome, &e.RequestID); err != nil {
			return nil, fmt.Errorf("list audit entries: %w", err)
		}
		e.Time = sqldb.Time(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	return out, nil
}

// boolInt stores a bool as 0 or 1 (SQLite and PostgreSQL alike).
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// OpenPullRequestNumbers lists the pull requests of a repository that
// have runs that have not ended.
func (s *Store) OpenPullRequestNumbers(ctx context.Context, repoID string) ([]int64, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT pull_request FROM runs WHERE repository_id = $1 AND pull_request > 0 AND status IN ($2, $3)`,
		repoID, string(domain.RunQueued), string(domain.RunRunning))
	if err != nil {
		return nil, fmt.Errorf("list the pull requests with runs going: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list the pull requests with runs going: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
