// Package sqldb opens a service's SQL database and applies its embedded
// migrations. SQLite (pure Go, modernc.org/sqlite) is the default store; the
// SQL the services write sticks to what PostgreSQL also accepts ($N
// placeholders, INSERT ... ON CONFLICT, BIGINT nanosecond timestamps).
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is an open service database.
type DB struct {
	*sql.DB
	url string
}

// Migrations is one named set of migration files (`NNN_what.sql`, applied in
// name order, each once).
type Migrations struct {
	// Name scopes the versions, e.g. "source" or "events".
	Name string
	FS   fs.FS
}

// Open opens the database at url and applies every migration set in order.
// url is "sqlite:PATH" or a plain file path; the file's directory is created.
func Open(ctx context.Context, url string, sets ...Migrations) (*DB, error) {
	path, err := sqlitePath(url)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create database directory: %w", err)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	sqlDB, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One connection: SQLite has one writer anyway, and a single connection
	// makes "database is locked" impossible inside one process.
	sqlDB.SetMaxOpenConns(1)
	sqlDB.SetConnMaxIdleTime(0)
	db := &DB{DB: sqlDB, url: url}
	if err := sqlDB.PingContext(ctx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	for _, set := range sets {
		if err := db.migrate(ctx, set); err != nil {
			_ = sqlDB.Close()
			return nil, err
		}
	}
	return db, nil
}

func sqlitePath(url string) (string, error) {
	switch {
	case url == "":
		return "", errors.New("database url is empty")
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return "", fmt.Errorf("database url %q: PostgreSQL is not supported yet; use sqlite:PATH", url)
	case strings.HasPrefix(url, "sqlite://"):
		return strings.TrimPrefix(url, "sqlite://"), nil
	case strings.HasPrefix(url, "sqlite:"):
		return strings.TrimPrefix(url, "sqlite:"), nil
	case strings.Contains(url, "://"):
		return "", fmt.Errorf("database url %q: unknown scheme; use sqlite:PATH", url)
	default:
		return url, nil
	}
}

func (db *DB) migrate(ctx context.Context, set Migrations) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version TEXT PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	names, err := fs.Glob(set.FS, "*.sql")
	if err != nil {
		return fmt.Errorf("list %s migrations: %w", set.Name, err)
	}
	sort.Strings(names)
	for _, name := range names {
		version := set.Name + "/" + name
		body, err := fs.ReadFile(set.FS, name)
		if err != nil {
			return fmt.Errorf("read migration %s: %w", version, err)
		}
		err = db.InTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range splitStatements(string(body)) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, stmt)
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, time.Now().UnixNano())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", version, err)
		}
	}
	return nil
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

// InTx runs fn in a transaction, committing when fn returns nil.
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	tx, err := db.BeginTx(ctx, nil)
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

// IsUniqueViolation reports whether err is a unique-constraint failure, as
// SQLite words it or as PostgreSQL codes it (SQLSTATE 23505).
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "SQLSTATE 23505")
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
