package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sluicehq/sluice/platform/sqldb"
)

func TestOpenAppliesMigrationsOnce(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "svc.db")
	set := sqldb.Migrations{Name: "svc", FS: fstest.MapFS{
		"001_init.sql": {Data: []byte("-- first\nCREATE TABLE a (id TEXT PRIMARY KEY, n BIGINT NOT NULL);\nCREATE INDEX a_n ON a (n);\n")},
		"002_more.sql": {Data: []byte("ALTER TABLE a ADD COLUMN note TEXT NOT NULL DEFAULT '';")},
	}}
	db, err := sqldb.Open(ctx, "sqlite:"+path, set)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO a (id, n, note) VALUES ($1, $2, $3)`, "x", 1, "hi"); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening must not apply the migrations again (the ALTER would fail).
	db, err = sqldb.Open(ctx, path, set)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var note string
	if err := db.QueryRowContext(ctx, `SELECT note FROM a WHERE id = $1`, "x").Scan(&note); err != nil || note != "hi" {
		t.Fatalf("note = %q, %v", note, err)
	}
}

func TestInTxRollsBackOnError(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "x.db"), sqldb.Migrations{Name: "x", FS: fstest.MapFS{
		"001.sql": {Data: []byte("CREATE TABLE t (id TEXT PRIMARY KEY);")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO t (id) VALUES ('a')`); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows = %d, %v", n, err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO t (id) VALUES ('a')`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO t (id) VALUES ('a')`)
	if !sqldb.IsUniqueViolation(err) {
		t.Fatalf("want unique violation, got %v", err)
	}
}

func TestOpenRejectsUnknownURL(t *testing.T) {
	for _, url := range []string{"", "mysql://x", "postgres://localhost/x"} {
		if _, err := sqldb.Open(context.Background(), url); err == nil {
			t.Errorf("Open(%q) succeeded", url)
		}
	}
}

func TestTimeRoundTrip(t *testing.T) {
	now := time.Now()
	if got := sqldb.Time(sqldb.Nanos(now)); !got.Equal(now) {
		t.Fatalf("got %v want %v", got, now)
	}
	if !sqldb.Time(sqldb.Nanos(time.Time{})).IsZero() {
		t.Fatal("zero time not kept")
	}
}
