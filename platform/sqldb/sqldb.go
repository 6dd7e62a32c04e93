// Package sqldb opens a service's SQL database and applies its embedded
// migrations. SQLite (pure Go, modernc.org/sqlite) is the single-replica
// default; PostgreSQL (pgx) serves replicas that share one database. The same
// migrations and queries serve both: the SQL sticks to what both accept ($N
// placeholders, INSERT ... ON CONFLICT, BIGINT nanosecond timestamps).
package sqldb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	neturl "net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/sluicehq/sluice/platform/retry"
)

// DB is a service database. New makes one that Open connects and migrates
// later (from a start hook); the package-level Open does both at once.
type DB struct {
	*sql.DB
	url      string
	sets     []Migrations
	postgres bool
	// reader is SQLite's pool of read-only connections (Reader); nil for
	// PostgreSQL, whose pool serves reads and writes alike.
	reader *sql.DB
	// unlock releases the SQLite database's lock file, held while the DB is
	// open so that a second process cannot use the same file.
	unlock func()
}

// Migrations is one named set of migration files (`NNN_what.sql`, applied in
// name order, each once).
type Migrations struct {
	// Name scopes the versions, e.g. "source" or "events".
	Name string
	FS   fs.FS
}

// New makes the handle of the database at url with its migration sets,
// without touching it: Open connects and migrates. A service constructs it
// when it is composed and opens it in its start hook, so that composing a
// process has no side effects.
func New(url string, sets ...Migrations) *DB {
	return &DB{url: url, sets: sets, postgres: isPostgresURL(url)}
}

// Open opens the database at url and applies every migration set in order.
//
// url is "postgres://user:password@host:port/db?…" (PostgreSQL, for several
// replicas of a service), or "sqlite:PATH" or a plain file path (SQLite, the
// single-replica default; the file's directory is created). A SQLite file is
// locked for as long as it is open: a second process pointed at it is refused
// with a message that says to use PostgreSQL for replicas.
func Open(ctx context.Context, url string, sets ...Migrations) (*DB, error) {
	db := New(url, sets...)
	if err := db.Open(ctx); err != nil {
		return nil, err
	}
	return db, nil
}

// Open connects to the database and applies the migration sets in order,
// once: a DB is not reopened. Nothing else may use db before Open returned
// nil.
func (db *DB) Open(ctx context.Context) error {
	if db.DB != nil {
		return fmt.Errorf("database %s is already open", Redacted(db.url))
	}
	var err error
	if db.postgres {
		err = db.openPostgres(ctx)
	} else {
		err = db.openSQLite(ctx)
	}
	if err != nil {
		return err
	}
	for _, set := range db.sets {
		if err := db.migrate(ctx, set); err != nil {
			_ = db.Close()
			return err
		}
	}
	return nil
}

// Reader is the pool for reads outside a transaction that do not need to
// see a write this goroutine has not committed: API reads (a run, a log
// page, a list). On SQLite, whose one writing connection (DB) serializes
// everything, it is a pool of SQLiteReaders read-only connections that
// read concurrently with the writer (WAL); on PostgreSQL it is DB. A read
// that must see its own transaction's writes uses that transaction.
func (db *DB) Reader() *sql.DB {
	if db.reader != nil {
		return db.reader
	}
	return db.DB
}

// SQLiteReaders is the size of a SQLite database's read pool (Reader).
const SQLiteReaders = 4

// Postgres reports whether the database is PostgreSQL (else SQLite).
func (db *DB) Postgres() bool { return db.postgres }

// Close closes the database and, for SQLite, releases its lock file. A
// database that was never opened closes without error, and closing twice
// is harmless. A use after Close fails with sql.ErrConnDone's kind of
// error rather than a nil dereference: work that outlives a stop (a
// handler past its drain time) sees an error, never a crash.
func (db *DB) Close() error {
	if db.DB == nil {
		return nil
	}
	err := db.DB.Close()
	if db.reader != nil {
		err = errors.Join(err, db.reader.Close())
	}
	if db.unlock != nil {
		db.unlock() // once only (lockSQLite)
	}
	return err
}

func isPostgresURL(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// Redacted is url without its password, for logs and errors; an unparsable
// URL loses everything between "://" and the last "@".
func Redacted(url string) string {
	u, err := neturl.Parse(url)
	if err == nil {
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(url, "://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return url
	}
	return scheme + "://xxxxx" + rest[at:]
}

// PostgresMaxConns bounds each service process's PostgreSQL connections.
const PostgresMaxConns = 16

// PostgresConnectWait is how long Open waits for a PostgreSQL server that
// refuses connections or cannot be reached before it gives up.
const PostgresConnectWait = time.Minute

func (db *DB) openPostgres(ctx context.Context) error {
	url := db.url
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's message quotes the URL with the password masked.
		return fmt.Errorf("database url: %w", err)
	}
	sqlDB := stdlib.OpenDB(*cfg)
	sqlDB.SetMaxOpenConns(PostgresMaxConns)
	sqlDB.SetMaxIdleConns(PostgresMaxConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	// The server may still be starting (a compose stack, a pod next to its
	// database): retry a refused connection for up to PostgresConnectWait
	// (or until ctx ends), but give up at once on an answer from the server
	// such as a wrong password.
	err = retry.Do(ctx, connectBackoff, func(ctx context.Context) error {
		pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := sqlDB.PingContext(pingCtx)
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
			return retry.Permanent(err)
		}
		// A certificate that does not verify (sslmode verify-ca or
		// verify-full) is a setting to mend, not a server still starting.
		if certificateRefused(err) {
			return retry.Permanent(err)
		}
		return err
	}, retry.GiveUpAfter(PostgresConnectWait))
	if err != nil {
		_ = sqlDB.Close()
		return fmt.Errorf("open %s: %w", Redacted(url), err)
	}
	db.DB = sqlDB
	return nil
}

// certificateRefused reports whether err is a server certificate that did
// not verify: by crypto/tls (verify-full) or by pgx itself (verify-ca, and
// require with a root certificate), which returns x509's errors bare.
func certificateRefused(err error) bool {
	var (
		tlsErr      *tls.CertificateVerificationError
		unknownRoot x509.UnknownAuthorityError
		invalid     x509.CertificateInvalidError
		wrongName   x509.HostnameError
	)
	return errors.As(err, &tlsErr) || errors.As(err, &unknownRoot) || errors.As(err, &invalid) || errors.As(err, &wrongName)
}

// connectBackoff paces the tries to reach a PostgreSQL server that is not
// up yet.
var connectBackoff = retry.Backoff{Initial: 250 * time.Millisecond, Max: 2 * time.Second, Jitter: 0.2}

// conflictBackoff spreads out replicas whose transactions conflicted.
var conflictBackoff = retry.Backoff{Initial: 2 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.8}

func (db *DB) openSQLite(ctx context.Context) error {
	path, err := sqlitePath(db.url)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("create database directory: %w", err)
	}
	unlock, err := lockSQLite(path)
	if err != nil {
		return err
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	sqlDB, err := sql.Open("sqlite", dsn)
	if err != nil {
		unlock()
		return fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and a single connection
	// makes "database is locked" impossible inside one process.
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetConnMaxIdleTime(0)
	db.DB, db.unlock = sqlDB, unlock
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = db.Close()
		return fmt.Errorf("open %s: %w", path, err)
	}
	// Readers: WAL lets them read the last committed state while the
	// writer writes; query_only makes a write through them an error.
	reader, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)&_pragma=foreign_keys(1)&_txlock=deferred")
	if err != nil {
		_ = db.Close()
		return fmt.Errorf("open %s for reading: %w", path, err)
	}
	reader.SetMaxOpenConns(SQLiteReaders)
	reader.SetMaxIdleConns(SQLiteReaders)
	db.reader = reader
	return nil
}

// ErrInUse is returned when a SQLite database is already open in another
// process (or another DB in this one).
var ErrInUse = errors.New("database in use")

// sqliteLocks holds this process's lock files by path, so that several DBs
// of one process may share a file (tests reopen a service's database) while
// another process is refused.
var sqliteLocks = struct {
	sync.Mutex
	byPath map[string]*sqliteLock
}{byPath: map[string]*sqliteLock{}}

type sqliteLock struct {
	file *os.File
	refs int
}

// lockSQLite takes an exclusive lock on PATH.lock for this process. The
// kernel drops the lock when the process dies, so a crashed process never
// leaves it stale.
func lockSQLite(path string) (release func(), err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("database path %s: %w", path, err)
	}
	sqliteLocks.Lock()
	defer sqliteLocks.Unlock()
	l := sqliteLocks.byPath[abs]
	if l == nil {
		f, err := flockFile(abs + ".lock")
		if err != nil {
			return nil, err
		}
		l = &sqliteLock{file: f}
		sqliteLocks.byPath[abs] = l
	}
	l.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			sqliteLocks.Lock()
			defer sqliteLocks.Unlock()
			l.refs--
			if l.refs == 0 {
				delete(sqliteLocks.byPath, abs)
				_ = syscall.Flock(int(l.file.Fd()), syscall.LOCK_UN)
				_ = l.file.Close()
			}
		})
	}, nil
}

func flockFile(lockPath string) (*os.File, error) {
	dbPath := strings.TrimSuffix(lockPath, ".lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := "another process"
		if b, rerr := os.ReadFile(lockPath); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = "process " + strings.TrimSpace(string(b))
		}
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sqlite database %s is already open in %s: %w; SQLite serves one replica only, "+
				"so to run more than one replica of a service point all of them at one PostgreSQL database "+
				"(--database-url postgres://user:password@host:5432/db)", dbPath, holder, ErrInUse)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func sqlitePath(url string) (string, error) {
	switch {
	case url == "":
		return "", errors.New("database url is empty")
	case strings.HasPrefix(url, "sqlite://"):
		return strings.TrimPrefix(url, "sqlite://"), nil
	case strings.HasPrefix(url, "sqlite:"):
		return strings.TrimPrefix(url, "sqlite:"), nil
	case strings.Contains(url, "://"):
		return "", fmt.Errorf("database url %q: unknown scheme; use sqlite:PATH or postgres://user:password@host:port/db", Redacted(url))
	default:
		return url, nil
	}
}

// migrationLockKey is the PostgreSQL advisory lock that serialises the
// migrations of replicas starting at the same time.
const migrationLockKey = 0x736c756963650001

func (db *DB) migrate(ctx context.Context, set Migrations) error {
	names, err := fs.Glob(set.FS, "*.sql")
	if err != nil {
		return fmt.Errorf("list %s migrations: %w", set.Name, err)
	}
	sort.Strings(names)
	// One connection for the whole set: on PostgreSQL it holds a session
	// advisory lock, so replicas starting together migrate one at a time and
	// each sees what the one before it committed.
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", set.Name, err)
	}
	defer func() { _ = conn.Close() }()
	if db.postgres {
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockKey)); err != nil {
			return fmt.Errorf("migrate %s: take the migration lock: %w", set.Name, err)
		}
		defer func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLockKey))
		}()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version TEXT PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, name := range names {
		version := set.Name + "/" + name
		body, err := fs.ReadFile(set.FS, name)
		if err != nil {
			return fmt.Errorf("read migration %s: %w", version, err)
		}
		if err := applyMigration(ctx, conn, version, string(body)); err != nil {
			return fmt.Errorf("apply migration %s: %w", version, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, conn *sql.Conn, version, body string) (err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return tx.Rollback()
	}
	for _, stmt := range splitStatements(body) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%w\n%s", err, stmt)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

// splitStatements splits a migration file on semicolons that end a line.
// Migrations keep to plain DDL, so this is enough.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(trimmed, ";") {
			if s := strings.TrimSpace(cur.String()); s != ";" {
				out = append(out, strings.TrimSuffix(s, ";"))
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// MaxTxAttempts bounds how often InTx runs a PostgreSQL transaction that
// lost a serialization conflict.
const MaxTxAttempts = 20

// InTx runs fn in a transaction, committing when fn returns nil.
//
// SQLite transactions are serial (one connection, BEGIN IMMEDIATE). On
// PostgreSQL they run SERIALIZABLE, so replicas sharing the database see the
// same guarantees; a transaction that loses a conflict (SQLSTATE 40001 or a
// deadlock, 40P01) is run again, so fn must only touch the database and
// variables it sets afresh on each call.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if !db.postgres {
		return db.inTx(ctx, nil, fn)
	}
	opts := &sql.TxOptions{Isolation: sql.LevelSerializable}
	for attempt := 1; ; attempt++ {
		err := db.inTx(ctx, opts, fn)
		if err == nil || !isSerializationFailure(err) || attempt == MaxTxAttempts {
			return err
		}
		// Back off a little, with jitter, so the competing replicas spread out.
		if !retry.Sleep(ctx, conflictBackoff.Delay(attempt)) {
			return err
		}
	}
}

func (db *DB) inTx(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func isSerializationFailure(err error) bool {
	code := sqlState(err)
	return code == "40001" || code == "40P01"
}

// IsUniqueViolation reports whether err is a unique-constraint failure, as
// SQLite words it or as PostgreSQL codes it (SQLSTATE 23505).
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	return sqlState(err) == "23505" || strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// Text makes s storable in a TEXT column of both stores: PostgreSQL refuses
// NUL bytes and invalid UTF-8, which process output may hold. Each is
// replaced by U+FFFD.
func Text(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Nanos is a time as stored: Unix nanoseconds, 0 for the zero time.
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Time turns stored nanoseconds back into a time (zero for 0).
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Embedded is the migration set name kept in the "migrations" folder of an
// embedded file system (`//go:embed migrations/*.sql`).
func Embedded(name string, files fs.FS) Migrations {
	sub, err := fs.Sub(files, "migrations")
	if err != nil {
		// fs.Sub fails only for an invalid path, and "migrations" is valid.
		panic(err)
	}
	return Migrations{Name: name, FS: sub}
}

// Lock takes a lock named key that every process sharing the database
// respects, waiting until it is free or ctx ends; call the returned function
// to release it. On PostgreSQL it is a session advisory lock on a connection
// of its own, so a replica that dies releases it with its connection. SQLite
// serves one process, so there it takes nothing and callers keep their
// in-process locks.
func (db *DB) Lock(ctx context.Context, key string) (func(), error) {
	if !db.postgres {
		return func() {}, nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock %q: %w", key, err)
	}
	id := lockID(key)
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, id); err != nil {
		// The server may have granted the lock as ctx ended: never hand a
		// session that might hold it back to the pool.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = conn.Close()
		return nil, fmt.Errorf("lock %q: %w", key, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, id); err != nil {
				// Closing a connection whose unlock failed would hand a
				// locked session back to the pool; drop it instead.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
			_ = conn.Close()
		})
	}, nil
}

// lockID is the advisory lock number of a key: its FNV-1a hash (keys may
// hold bytes PostgreSQL text refuses, such as NUL).
func lockID(key string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	return int64(h.Sum64()) //nolint:gosec // a hash; wrapping to negative numbers is fine
}

// Collect scans every row of rows with scan, closes rows, and returns what
// it scanned, or the first error (of a scan or of the iteration).
func Collect[T any](rows *sql.Rows, scan func(*sql.Rows) (T, error)) ([]T, error) {
	defer func() { _ = rows.Close() }()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
