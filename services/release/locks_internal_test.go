package release

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

// testLease is a short lease for the tests: it lapses after 1.2 s, and a
// holder that cannot renew stops its work after 0.8 s.
var testLease = lockLease{Duration: 1200 * time.Millisecond, Heartbeat: 100 * time.Millisecond, StopTime: 400 * time.Millisecond}

// locksDB is a fresh release database of the store $SLUICE_TEST_STORE
// selects.
func locksDB(t *testing.T) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(t.Context(), sqldbtest.URL(t), Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// cutOff is a database a replica can be cut off from: while cut, every
// statement fails as an unreachable server's would.
type cutOff struct {
	db  *sqldb.DB
	cut atomic.Bool
}

var errUnreachable = errors.New("dial tcp 10.0.0.5:5432: connect: no route to host")

func (c *cutOff) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if c.cut.Load() {
		<-ctx.Done() // no answer until the caller gives up
		return nil, errUnreachable
	}
	return c.db.ExecContext(ctx, query, args...)
}

func (c *cutOff) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if c.cut.Load() {
		ctx, cancel := context.WithCancel(ctx)
		cancel() // a row whose Scan fails
		return c.db.QueryRowContext(ctx, query, args...)
	}
	return c.db.QueryRowContext(ctx, query, args...)
}

func replica(t *testing.T, db lockDB, name string) *keyedLocks {
	return newKeyedLocks(db, name, testLease, slog.New(slog.NewTextHandler(t.Output(), nil)))
}

// Two replicas on one database: the second waits while the first holds
// the environment, and gets it at once when the first unlocks.
func TestLocksExcludeReplicasOnOneDatabase(t *testing.T) {
	t.Parallel()
	db := locksDB(t)
	a, b := replica(t, db, "replica-a"), replica(t, db, "replica-b")
	key := environmentKey("app", "production")

	held, err := a.Lock(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	// Longer than the lease: a holder that renews keeps it.
	wait, cancel := context.WithTimeout(t.Context(), 2*testLease.Duration)
	defer cancel()
	if _, err := b.Lock(wait, key); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("replica b locked an environment replica a holds: %v", err)
	}
	if err := held.Context().Err(); err != nil {
		t.Fatalf("a's work was cancelled while it renewed its lease: %v", context.Cause(held.Context()))
	}
	// Another key is free.
	other, err := b.Lock(t.Context(), environmentKey("app", "staging"))
	if err != nil {
		t.Fatal(err)
	}
	other.Unlock()

	got := make(chan time.Time, 1)
	go func() {
		h, err := b.Lock(t.Context(), key)
		if err != nil {
			t.Error(err)
			got <- time.Time{}
			return
		}
		got <- time.Now()
		h.Unlock()
	}()
	time.Sleep(200 * time.Millisecond)
	unlocked := time.Now()
	held.Unlock()
	held.Unlock() // twice is once
	at := <-got
	if at.IsZero() {
		return
	}
	if took := at.Sub(unlocked); took > maxLockPoll+200*time.Millisecond {
		t.Errorf("replica b got the lock %s after a unlocked it; want at once (not when the lease lapses)", took)
	}
}

// A replica cut off from the database cannot renew its lease: its work is
// cancelled as lost before the lease lapses, and another replica gets the
// lock only once it lapsed, so the two never work at once. The cut-off
// replica's fenced writes fail.
func TestALockThatCannotBeRenewedIsLostBeforeAnotherReplicaGetsIt(t *testing.T) {
	t.Parallel()
	db := locksDB(t)
	conn := &cutOff{db: db}
	a, b := replica(t, conn, "replica-a"), replica(t, db, "replica-b")
	key := environmentKey("app", "production")

	held, err := a.Lock(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * testLease.Heartbeat) // renewals that succeed
	cut := time.Now()
	conn.cut.Store(true)

	type claim struct {
		at  time.Time
		err error
	}
	got := make(chan claim, 1)
	go func() {
		h, err := b.Lock(t.Context(), key)
		got <- claim{time.Now(), err}
		if err == nil {
			h.Unlock()
		}
	}()

	select {
	case <-held.Context().Done():
	case <-time.After(5 * testLease.Duration):
		t.Fatal("the cut-off replica's work goes on")
	}
	stopped := time.Now()
	if cause := context.Cause(held.Context()); !errors.Is(cause, lease.ErrLost) {
		t.Errorf("the work's cause is %v; want lease.ErrLost", cause)
	}
	if took := stopped.Sub(cut); took > testLease.lapse()+200*time.Millisecond {
		t.Errorf("the cut-off replica's work stopped %s after the cut; want at most %s", took, testLease.lapse())
	}
	c := <-got
	if c.err != nil {
		t.Fatal(c.err)
	}
	if !c.at.After(stopped) {
		t.Errorf("replica b got the lock at %s, before the cut-off replica's work stopped at %s", c.at, stopped)
	}
	if took := c.at.Sub(cut); took > testLease.Duration+maxLockPoll+500*time.Millisecond {
		t.Errorf("replica b got the lock %s after the cut; want about the lease (%s)", took, testLease.Duration)
	}
	// Back in touch, a's writes under the lock are refused.
	conn.cut.Store(false)
	err = db.InTx(t.Context(), func(tx *sql.Tx) error { return held.Fence(t.Context(), tx) })
	if !errors.Is(err, lease.ErrLost) {
		t.Errorf("a fenced write of the replica whose lease was claimed again: %v; want lease.ErrLost", err)
	}
	held.Unlock()
}

// The token goes up with every claim, and a lock released is claimed at
// once, also by the same replica.
func TestLockTokensGoUp(t *testing.T) {
	t.Parallel()
	db := locksDB(t)
	a := replica(t, db, "replica-a")
	key := repositoryKey("app")
	var last int64
	for range 3 {
		held, err := a.Lock(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if held.token <= last {
			t.Errorf("token %d after %d", held.token, last)
		}
		last = held.token
		if err := db.InTx(t.Context(), func(tx *sql.Tx) error { return held.Fence(t.Context(), tx) }); err != nil {
			t.Errorf("fence of the holder: %v", err)
		}
		held.Unlock()
	}
	// A waiter whose context ends gets its cause.
	held, err := a.Lock(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(errors.New("stopping"))
	if _, err := replica(t, db, "replica-b").Lock(ctx, key); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("Lock with an ended context: %v", err)
	}
}
