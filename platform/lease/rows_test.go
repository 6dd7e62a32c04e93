package lease_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

// jobs is a table of jobs as a service keeps them: the lease is two
// columns of the job's own row.
func jobs(t *testing.T) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(t.Context(), sqldbtest.URL(t), sqldb.Migrations{Name: "jobs", FS: fstest.MapFS{
		"001.sql": {Data: []byte(`CREATE TABLE jobs (id TEXT PRIMARY KEY, worker TEXT NOT NULL, attempt BIGINT NOT NULL,
			lease_until BIGINT NOT NULL);
			INSERT INTO jobs (id, worker, attempt, lease_until) VALUES ('job-1', '', 0, 0);`)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// row is one worker's lease on job-1.
type row struct {
	db      *sqldb.DB
	worker  string
	attempt int
	ttl     time.Duration
}

func (r row) update(ctx context.Context, until int64) error {
	res, err := r.db.ExecContext(ctx, `UPDATE jobs SET lease_until = $1 WHERE id = 'job-1' AND worker = $2 AND attempt = $3`,
		until, r.worker, r.attempt)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errors.Join(err, fmt.Errorf("job-1 attempt %d of %s: %w", r.attempt, r.worker, lease.ErrLost))
	}
	return nil
}

func (r row) Renew(ctx context.Context) error   { return r.update(ctx, time.Now().Add(r.ttl).UnixNano()) }
func (r row) Release(ctx context.Context) error { return r.update(ctx, 0) }

// claim is one try of worker to claim job-1 for ttl.
func claim(db *sqldb.DB, worker string, ttl time.Duration) func(context.Context) (row, lease.Try, error) {
	return func(ctx context.Context) (row, lease.Try, error) {
		var attempt int
		var until int64
		if err := db.QueryRowContext(ctx, `SELECT attempt, lease_until FROM jobs WHERE id = 'job-1'`).Scan(&attempt, &until); err != nil {
			return row{}, lease.Settled, err
		}
		now := time.Now()
		if until > now.UnixNano() {
			return row{}, lease.Held, nil
		}
		res, err := db.ExecContext(ctx, `UPDATE jobs SET worker = $1, attempt = attempt + 1, lease_until = $2
			WHERE id = 'job-1' AND attempt = $3`, worker, now.Add(ttl).UnixNano(), attempt)
		if err != nil {
			return row{}, lease.Settled, err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return row{}, lease.Raced, err
		}
		return row{db: db, worker: worker, attempt: attempt + 1, ttl: ttl}, lease.Settled, nil
	}
}

// Two workers share a job through its row: the second waits while the
// first renews, gets the job once it is released, and a third takes it
// over when the second stops renewing; the second's late writes then find
// their lease lost.
func TestWorkersShareAJobThroughItsRow(t *testing.T) {
	t.Parallel()
	db := jobs(t)
	const every, ttl = 10 * time.Millisecond, 100 * time.Millisecond

	a, err := lease.Acquire(t.Context(), every, claim(db, "a", ttl))
	if err != nil || a.attempt != 1 {
		t.Fatalf("a's claim = %+v, %v", a, err)
	}
	_, keepA := lease.Keep(t.Context(), a, lease.Options{Every: every})

	gotB := make(chan row, 1)
	go func() {
		b, err := lease.Acquire(t.Context(), every/2, claim(db, "b", ttl))
		if err != nil {
			t.Error(err)
		}
		gotB <- b
	}()
	select {
	case b := <-gotB:
		t.Fatalf("b claimed the job (%+v) while a renewed its lease", b)
	case <-time.After(3 * ttl):
	}
	keepA.Release()
	var b row
	select {
	case b = <-gotB:
	case <-time.After(5 * time.Second):
		t.Fatal("b did not get the job a released")
	}
	if b.worker != "b" || b.attempt != 2 {
		t.Fatalf("b's claim = %+v; want attempt 2", b)
	}

	// b stops renewing without releasing (a crash): c takes over once the
	// lease lapsed.
	_, keepB := lease.Keep(t.Context(), b, lease.Options{Every: every})
	time.Sleep(2 * every)
	keepB.Stop()
	start := time.Now()
	c, err := lease.Acquire(t.Context(), every/2, claim(db, "c", ttl))
	if err != nil || c.attempt != 3 {
		t.Fatalf("c's claim = %+v, %v", c, err)
	}
	if waited := time.Since(start); waited > ttl+time.Second {
		t.Errorf("c waited %v for a lease of %v", waited, ttl)
	}
	if err := b.Renew(t.Context()); !errors.Is(err, lease.ErrLost) {
		t.Errorf("b's renewal after the takeover: %v; want ErrLost", err)
	}

	// c is taken over while it works (its process paused past the lease):
	// its next renewal cancels its work.
	work, keepC := lease.Keep(t.Context(), c, lease.Options{Every: every})
	defer keepC.Stop()
	if _, err := db.ExecContext(t.Context(), `UPDATE jobs SET worker = 'd', attempt = 4 WHERE id = 'job-1'`); err != nil {
		t.Fatal(err)
	}
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("c's work goes on after d took the job over")
	}
	if cause := context.Cause(work); !errors.Is(cause, lease.ErrLost) {
		t.Errorf("c's work ended with %v; want ErrLost", cause)
	}
}
