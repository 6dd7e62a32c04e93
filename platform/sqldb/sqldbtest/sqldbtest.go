// Package sqldbtest gives tests fresh, empty databases of both stores Sluice
// supports, so that one suite runs against SQLite and PostgreSQL alike.
//
// SQLite databases live in t.TempDir(). PostgreSQL databases are created per
// test on the server named by $SLUICE_TEST_POSTGRES_URL (a role that may
// create databases; `scripts/test-postgres` starts one and prints its URL)
// and dropped when the test ends. Without that variable the PostgreSQL cases
// are skipped, unless $SLUICE_TEST_POSTGRES_REQUIRED is set (CI sets it), in
// which case they fail.
package sqldbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// The environment variables this package reads.
const (
	EnvPostgresURL      = "SLUICE_TEST_POSTGRES_URL"
	EnvPostgresRequired = "SLUICE_TEST_POSTGRES_REQUIRED"
	// EnvStore picks the store URL() gives: "sqlite" (default) or "postgres".
	EnvStore = "SLUICE_TEST_STORE"
)

// The stores.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Stores lists every store, in the order Each runs them.
var Stores = []string{SQLite, Postgres}

// Each runs fn as a subtest per store.
func Each(t *testing.T, fn func(t *testing.T, store string)) {
	t.Helper()
	for _, store := range Stores {
		t.Run(store, func(t *testing.T) { fn(t, store) })
	}
}

// Store is the store $SLUICE_TEST_STORE selects (SQLite when unset).
func Store(t testing.TB) string {
	t.Helper()
	switch s := os.Getenv(EnvStore); s {
	case "", SQLite:
		return SQLite
	case Postgres:
		return Postgres
	default:
		t.Fatalf("%s=%q: want %q or %q", EnvStore, s, SQLite, Postgres)
		return ""
	}
}

// URL is a fresh database of the store $SLUICE_TEST_STORE selects.
func URL(t testing.TB) string {
	t.Helper()
	return URLFor(t, Store(t))
}

// URLFor is a fresh, empty database of store, removed when the test ends.
func URLFor(t testing.TB, store string) string {
	t.Helper()
	switch store {
	case SQLite:
		return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	case Postgres:
		return postgresDatabase(t)
	default:
		t.Fatalf("unknown store %q", store)
		return ""
	}
}

func postgresDatabase(t testing.TB) string {
	t.Helper()
	raw := os.Getenv(EnvPostgresURL)
	if raw == "" {
		if os.Getenv(EnvPostgresRequired) != "" {
			t.Fatalf("%s is set but %s is empty: start PostgreSQL with scripts/test-postgres and export its URL", EnvPostgresRequired, EnvPostgresURL)
		}
		t.Skipf("PostgreSQL case skipped: %s is not set (scripts/test-postgres starts a server and prints it)", EnvPostgresURL)
	}
	base, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgresURL, err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "sluice_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, raw, `CREATE DATABASE `+name); err != nil {
		t.Fatalf("create test database %s on %s: %v", name, EnvPostgresURL, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE cannot end a backend of a role the test's role is not a
		// member of, such as an autovacuum worker that just started on the
		// database: it is gone a moment later, so try again.
		var err error
		for range 10 {
			if err = adminExec(ctx, raw, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err == nil {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Errorf("drop test database %s: %v", name, err)
	})
	u := *base
	u.Path = "/" + name
	return u.String()
}

// adminExec runs one statement on its own connection, closed afterwards, so
// no pool outlives the test (goleak checks for that).
func adminExec(ctx context.Context, dsn, stmt string) error {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	_, err = db.ExecContext(ctx, stmt)
	return err
}
