package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

func TestOpenAppliesMigrationsOnce(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, store string) {
		ctx := context.Background()
		url := sqldbtest.URLFor(t, store)
		if store == sqldbtest.SQLite {
			// The directory of a SQLite file is created.
			url = "sqlite:" + filepath.Join(t.TempDir(), "sub", "svc.db")
		}
		set := sqldb.Migrations{Name: "svc", FS: fstest.MapFS{
			"001_init.sql": {Data: []byte("-- first\nCREATE TABLE a (id TEXT PRIMARY KEY, n BIGINT NOT NULL);\nCREATE INDEX a_n ON a (n);\n")},
			"002_more.sql": {Data: []byte("ALTER TABLE a ADD COLUMN note TEXT NOT NULL DEFAULT '';")},
		}}
		db, err := sqldb.Open(ctx, url, set)
		if err != nil {
			t.Fatal(err)
		}
		if got := db.Postgres(); got != (store == sqldbtest.Postgres) {
			t.Fatalf("Postgres() = %v for %s", got, store)
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO a (id, n, note) VALUES ($1, $2, $3)`, "x", 1, "hi"); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		// Reopening must not apply the migrations again (the ALTER would fail).
		db, err = sqldb.Open(ctx, url, set)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var note string
		if err := db.QueryRowContext(ctx, `SELECT note FROM a WHERE id = $1`, "x").Scan(&note); err != nil || note != "hi" {
			t.Fatalf("note = %q, %v", note, err)
		}
	})
}

// Replicas starting together migrate the same database at once: each
// migration is applied exactly once and every replica opens.
func TestConcurrentMigrations(t *testing.T) {
	ctx := context.Background()
	url := sqldbtest.URLFor(t, sqldbtest.Postgres)
	set := sqldb.Migrations{Name: "svc", FS: fstest.MapFS{
		"001_init.sql": {Data: []byte("CREATE TABLE a (id TEXT PRIMARY KEY);")},
		"002_more.sql": {Data: []byte("ALTER TABLE a ADD COLUMN n BIGINT NOT NULL DEFAULT 0;")},
	}}
	const replicas = 6
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() {
			db, err := sqldb.Open(ctx, url, set)
			if err == nil {
				err = db.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
}

func TestInTxRollsBackOnError(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, store string) {
		ctx := context.Background()
		db := openT(t, store)
		boom := errors.New("boom")
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ('a', 0)`); err != nil {
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
		if _, err = db.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ('a', 0)`); err != nil {
			t.Fatal(err)
		}
		_, err = db.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ('a', 0)`)
		if !sqldb.IsUniqueViolation(err) {
			t.Fatalf("want unique violation, got %v", err)
		}
		if sqldb.IsUniqueViolation(boom) || sqldb.IsUniqueViolation(nil) {
			t.Fatal("IsUniqueViolation true for another error")
		}
	})
}

// Collect scans every row in order, and returns a scan's error.
func TestCollect(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, store string) {
		ctx := context.Background()
		db := openT(t, store)
		for i, id := range []string{"a", "b", "c"} {
			if _, err := db.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ($1, $2)`, id, i); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := db.QueryContext(ctx, `SELECT id, n FROM t ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sqldb.Collect(rows, func(r *sql.Rows) (s string, err error) {
			var n int
			err = r.Scan(&s, &n)
			return fmt.Sprint(s, n), err
		})
		if err != nil || strings.Join(got, " ") != "a0 b1 c2" {
			t.Fatalf("Collect = %v, %v", got, err)
		}
		rows, err = db.QueryContext(ctx, `SELECT id FROM t`)
		if err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		if _, err := sqldb.Collect(rows, func(*sql.Rows) (int, error) { return 0, boom }); !errors.Is(err, boom) {
			t.Fatalf("a failed scan: %v", err)
		}
	})
}

// Read-modify-write transactions from many goroutines (replicas sharing a
// PostgreSQL database) lose no update: conflicts are retried.
func TestInTxConcurrentReadModifyWrite(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, store string) {
		ctx := context.Background()
		db := openT(t, store)
		if _, err := db.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ('counter', 0)`); err != nil {
			t.Fatal(err)
		}
		const writers, each = 8, 10
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for range writers {
			wg.Go(func() {
				for range each {
					errs <- db.InTx(ctx, func(tx *sql.Tx) error {
						var n int64
						if err := tx.QueryRowContext(ctx, `SELECT n FROM t WHERE id = 'counter'`).Scan(&n); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, `UPDATE t SET n = $1 WHERE id = 'counter'`, n+1)
						return err
					})
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := db.QueryRowContext(ctx, `SELECT n FROM t WHERE id = 'counter'`).Scan(&n); err != nil || n != writers*each {
			t.Fatalf("counter = %d, %v; want %d", n, err, writers*each)
		}
	})
}

// Process output may hold NUL bytes and invalid UTF-8; Text makes it
// storable in both stores.
func TestTextStoresAnyBytes(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, store string) {
		ctx := context.Background()
		db := openT(t, store)
		raw := "ok \x00 nul \xff\xfe bad é"
		if _, err := db.ExecContext(ctx, `INSERT INTO t (id, n, note) VALUES ($1, 0, $2)`, "x", sqldb.Text(raw)); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := db.QueryRowContext(ctx, `SELECT note FROM t WHERE id = 'x'`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if want := "ok \uFFFD nul \uFFFD bad é"; got != want {
			t.Fatalf("note = %q, want %q", got, want)
		}
	})
	if s := "plain"; sqldb.Text(s) != s {
		t.Fatal("Text changed valid text")
	}
}

func openT(t testing.TB, store string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldbtest.URLFor(t, store), sqldb.Migrations{Name: "x", FS: fstest.MapFS{
		"001.sql": {Data: []byte("CREATE TABLE t (id TEXT PRIMARY KEY, n BIGINT NOT NULL, note TEXT NOT NULL DEFAULT '');")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func TestOpenRejectsBadURL(t *testing.T) {
	for url, want := range map[string]string{
		"":                              "empty",
		"mysql://x":                     "unknown scheme",
		"postgres://u:secret@[::1:5432": "database url: cannot parse",
	} {
		_, err := sqldb.Open(context.Background(), url)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v; want an error containing %q", url, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%q) error shows the password: %v", url, err)
		}
	}
}

func TestOpenPostgresWrongPasswordFailsAtOnce(t *testing.T) {
	url := sqldbtest.URLFor(t, sqldbtest.Postgres)
	bad := strings.Replace(url, "sluice:sluice@", "sluice:wrong@", 1)
	if bad == url {
		t.Skipf("test server URL %s has no sluice:sluice credentials to spoil", sqldb.Redacted(url))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := sqldb.Open(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "28P01") {
		t.Fatalf("err = %v; want a password failure (SQLSTATE 28P01)", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error shows the password: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a refused password was retried for %s", took)
	}
}

const (
	holdEnv     = "SQLDB_TEST_HOLD_DB"
	holdLockEnv = "SQLDB_TEST_HOLD_LOCK"
)

// TestMain lets the test binary act as "another process": with
// $SQLDB_TEST_HOLD_DB set it opens that SQLite database, says "open" and
// waits for its stdin to close; with $SQLDB_TEST_HOLD_LOCK set it takes the
// lock "env/staging" on that PostgreSQL database, says "locked" and waits to
// be killed.
func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		db, err := sqldb.Open(context.Background(), path)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("open")
		_, _ = os.Stdin.Read(make([]byte, 1))
		_ = db.Close()
		os.Exit(0)
	}
	if url := os.Getenv(holdLockEnv); url != "" {
		db, err := sqldb.Open(context.Background(), url)
		if err == nil {
			_, err = db.Lock(context.Background(), "env/staging")
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {} // until killed
	}
	os.Exit(m.Run())
}

func TestSecondProcessOnSQLiteIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "build.db")
	other := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	other.Env = append(os.Environ(), holdEnv+"="+path)
	stdin, err := other.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := other.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 5)
	if _, err := stdout.Read(line); err != nil || string(line) != "open\n" {
		t.Fatalf("other process said %q, %v", line, err)
	}

	_, err = sqldb.Open(context.Background(), "sqlite:"+path)
	if !errors.Is(err, sqldb.ErrInUse) {
		t.Fatalf("second process opened the database: %v", err)
	}
	for _, want := range []string{path, fmt.Sprintf("process %d", other.Process.Pid), "PostgreSQL", "replica"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}

	// Once the other process is gone, the database opens.
	_ = stdin.Close()
	if err := other.Wait(); err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.Open(context.Background(), "sqlite:"+path)
	if err != nil {
		t.Fatalf("open after the other process ended: %v", err)
	}
	// The same process may open it again (tests reopen a service's database).
	again, err := sqldb.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("second open in the same process: %v", err)
	}
	_ = again.Close()
	_ = db.Close()
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

// Lock excludes the holders of a key across processes sharing a PostgreSQL
// database (two DBs stand for two replicas), and a replica that goes away
// releases its locks.
func TestLockAcrossReplicas(t *testing.T) {
	url := sqldbtest.URLFor(t, sqldbtest.Postgres)
	ctx := context.Background()
	a, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	unlockA, err := a.Lock(ctx, "env/staging")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = b.Lock(short, "env/staging")
	cancel()
	if err == nil {
		t.Fatal("replica b took a lock replica a holds")
	}
	// Another key is free.
	unlockOther, err := b.Lock(ctx, "env/production")
	if err != nil {
		t.Fatal(err)
	}
	unlockOther()

	unlockA()
	unlockA() // a second call does nothing
	unlockB, err := b.Lock(ctx, "env/staging")
	if err != nil {
		t.Fatalf("lock after a released it: %v", err)
	}
	unlockB()

	_ = a.Close()

	// Another process takes it and is killed: its connection drops and b
	// gets the lock.
	other := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	other.Env = append(os.Environ(), holdLockEnv+"="+url)
	stdout, err := other.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 7)
	if _, err := stdout.Read(line); err != nil || string(line) != "locked\n" {
		t.Fatalf("other process said %q, %v", line, err)
	}
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = b.Lock(short, "env/staging")
	cancel()
	if err == nil {
		t.Fatal("replica b took a lock the other process holds")
	}
	_ = other.Process.Kill()
	_ = other.Wait()
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	unlockB, err = b.Lock(wait, "env/staging")
	if err != nil {
		t.Fatalf("lock held by a killed process was not released: %v", err)
	}
	unlockB()
}

func TestRedactedHidesPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@db:5432/x?sslmode=disable":  "postgres://u:xxxxx@db:5432/x?sslmode=disable",
		"postgres://u@db/x?password=secret&sslmode=none": "postgres://u@db/x?password=xxxxx&sslmode=none",
		"postgres://u:secret@[::1:5432/x":                "postgres://xxxxx@[::1:5432/x",
		"sqlite:/var/lib/sluice/build.db":                "sqlite:/var/lib/sluice/build.db",
	} {
		if got := sqldb.Redacted(in); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", in, got, want)
		}
	}
}

// New touches nothing: the database is created, locked and migrated only
// by Open, which runs once; Close is safe before Open.
func TestNewThenOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "later.db")
	set := sqldb.Migrations{Name: "x", FS: fstest.MapFS{"001_t.sql": {Data: []byte("CREATE TABLE t (id TEXT PRIMARY KEY);")}}}
	db := sqldb.New("sqlite:"+path, set)
	if err := db.Close(); err != nil {
		t.Fatalf("Close before Open: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("New created %s (%v)", path, err)
	}
	if err := db.Open(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), `INSERT INTO t (id) VALUES ('a')`); err != nil {
		t.Fatalf("the migration did not run: %v", err)
	}
	if err := db.Open(t.Context()); err == nil {
		t.Fatal("a second Open succeeded")
	}
}

// Work that outlives a stop gets an error from a closed database, not a
// crash, and closing twice is harmless.
func TestUseAfterCloseIsAnError(t *testing.T) {
	t.Parallel()
	db, err := sqldb.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "closed.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := db.ExecContext(t.Context(), `SELECT 1`); err == nil {
		t.Fatal("a closed database ran a statement")
	}
}
