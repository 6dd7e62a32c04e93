package release

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/retry"
	"github.com/sluicehq/sluice/platform/runner"
)

// keyedLocks serializes work per key (a repository, a run, or a
// repository and an environment; taken in that order, never the other
// way): in this process with a mutex per key, then across the
// replicas sharing the database with a lease on the key's row of
// release_locks. The lease is claimed with one conditional statement,
// renewed every heartbeat (platform/lease) and released on unlock. A
// holder that cannot renew it, cut off from the database say, has its work
// cancelled (lease.ErrLost) once the lease may have lapsed, less the time
// the work needs to stop (stopTime), so that a replica that claims the
// lapsed lease never works beside it. Its writes are fenced too (Fence):
// a holder whose lease was claimed again writes nothing more. So old and
// new replicas side by side during a rolling upgrade, or a replica cut off
// from the database and one that is not, never deploy one environment at
// once. SQLite and PostgreSQL alike.
//
// The expiry is the holder's clock plus the lease's duration, compared
// with the claimant's clock: the replicas' clocks must agree to well
// within the time the work needs to stop.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock

	db     lockDB
	holder string
	lease  lockLease
	log    *slog.Logger
}

// lockDB is what the locks need of the database (a *sqldb.DB).
type lockDB interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// lockLease is how the locks' leases are kept.
type lockLease struct {
	// Duration is how long a claim or a renewal keeps the lease.
	Duration time.Duration
	// Heartbeat is the time between renewals.
	Heartbeat time.Duration
	// StopTime is how long before the lease may lapse a holder that could
	// not renew it stops its work: the time the work needs to stop (a
	// deploy command's SIGTERM, then SIGKILL after the executor's kill
	// grace).
	StopTime time.Duration
	// Supervisor guards the renewals (nil: runner's default).
	Supervisor *runner.Supervisor
}

// lapse is how long a holder trusts a lease it could not renew.
func (l lockLease) lapse() time.Duration { return l.Duration - l.StopTime }

// maxLockPoll bounds the back-off of a waiter between its tries.
const maxLockPoll = time.Second

type keyLock struct {
	ch    chan struct{} // holds a token while locked
	users int           // holders and waiters; the entry is dropped at 0
}

func newKeyedLocks(db lockDB, holder string, l lockLease, log *slog.Logger) *keyedLocks {
	return &keyedLocks{locks: map[string]*keyLock{}, db: db, holder: holder, lease: l, log: log}
}

// heldLock is a lock held: do the work in Context, whose cause is an error
// wrapping lease.ErrLost when the lease was lost, and Unlock once done.
type heldLock struct {
	key    string
	holder string
	token  int64
	ctx    context.Context
	unlock func()
	locks  *keyedLocks
}

// Context is the work's context: the one Lock was given, also cancelled
// when the lease is lost.
func (h *heldLock) Context() context.Context { return h.ctx }

// Unlock releases the lock at once (another replica may claim it). It may
// be called more than once.
func (h *heldLock) Unlock() { h.unlock() }

// Fence renews the lease inside tx and fails with lease.ErrLost when this
// holder no longer holds it, so that no write of a holder whose lease was
// claimed again lands: a write that ends the work under the lock goes in a
// transaction that calls it.
func (h *heldLock) Fence(ctx context.Context, tx *sql.Tx) error {
	return h.locks.renew(ctx, tx, h.key, h.holder, h.token)
}

// Lock waits until key is free or ctx ends, and returns the lock held.
// Waiters poll the database with a back-off of at most maxLockPoll.
func (k *keyedLocks) Lock(ctx context.Context, key string) (*heldLock, error) {
	return k.LockFor(ctx, ctx, key)
}

// LockFor is Lock whose wait ends with ctx and whose work's context
// (heldLock.Context) is work, also cancelled when the lease is lost: work
// that must not end when the caller who waited goes away.
func (k *keyedLocks) LockFor(ctx, work context.Context, key string) (*heldLock, error) {
	k.mu.Lock()
	l := k.locks[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.locks[key] = l
	}
	l.users++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		k.leave(key, l)
		return nil, context.Cause(ctx)
	}
	local := func() {
		<-l.ch
		k.leave(key, l)
	}
	token, claimed, err := k.claim(ctx, key)
	if err != nil {
		local()
		return nil, err
	}
	h := &heldLock{key: key, holder: k.holder, token: token, locks: k}
	var kept *lease.Keeper
	h.ctx, kept = lease.Keep(work, lockRow{h: h}, lease.Options{
		Every: k.lease.Heartbeat, Lapse: k.lease.lapse(), Since: claimed, ReleaseTimeout: recordTimeout,
		Log: k.log.With(slog.String("lock", key)), Supervisor: k.lease.Supervisor,
	})
	var once sync.Once
	h.unlock = func() {
		once.Do(func() {
			kept.Release()
			local()
		})
	}
	return h, nil
}

// claim claims key's row for this holder, waiting while another holds it;
// it returns the claim's token and when it was made.
func (k *keyedLocks) claim(ctx context.Context, key string) (int64, time.Time, error) {
	b := retry.Backoff{Initial: 10 * time.Millisecond, Max: min(maxLockPoll, k.lease.Heartbeat)}
	for attempt := 1; ; attempt++ {
		now := time.Now()
		var token int64
		err := k.db.QueryRowContext(ctx, `INSERT INTO release_locks (lock_key, holder, token, expires_at) VALUES ($1, $2, 1, $3)
			ON CONFLICT (lock_key) DO UPDATE SET holder = excluded.holder, token = release_locks.token + 1, expires_at = excluded.expires_at
			WHERE release_locks.expires_at <= $4
			RETURNING token`,
			key, k.holder, now.Add(k.lease.Duration).UnixNano(), now.UnixNano()).Scan(&token)
		switch {
		case err == nil:
			return token, now, nil
		case ctx.Err() != nil:
			return 0, time.Time{}, fmt.Errorf("waiting for the lock %s: %w", key, context.Cause(ctx))
		case !errors.Is(err, sql.ErrNoRows):
			return 0, time.Time{}, fmt.Errorf("claim the lock %s: %w", key, err)
		}
		// Held by another replica: wait for it to release the lock, or for
		// its lease to lapse.
		if !retry.Sleep(ctx, b.Delay(attempt)) {
			return 0, time.Time{}, fmt.Errorf("waiting for the lock %s: %w", key, context.Cause(ctx))
		}
	}
}

// execer is a *sql.Tx or the database.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// renew extends the lease of key held by holder with token, through e.
func (k *keyedLocks) renew(ctx context.Context, e execer, key, holder string, token int64) error {
	res, err := e.ExecContext(ctx, `UPDATE release_locks SET expires_at = $1 WHERE lock_key = $2 AND holder = $3 AND token = $4`,
		time.Now().Add(k.lease.Duration).UnixNano(), key, holder, token)
	if err != nil {
		return fmt.Errorf("renew the lock %s: %w", key, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("renew the lock %s: %w", key, err)
	}
	if n == 0 {
		return fmt.Errorf("the lock %s is no longer held by %s (its lease lapsed and was claimed again): %w", key, holder, lease.ErrLost)
	}
	return nil
}

// lockRow is a held lock's lease (lease.Lease).
type lockRow struct{ h *heldLock }

func (r lockRow) Renew(ctx context.Context) error {
	return r.h.locks.renew(ctx, r.h.locks.db, r.h.key, r.h.holder, r.h.token)
}

// Release lets another replica claim the lock at once. The row stays, so
// that the token keeps going up.
func (r lockRow) Release(ctx context.Context) error {
	_, err := r.h.locks.db.ExecContext(ctx, `UPDATE release_locks SET expires_at = 0 WHERE lock_key = $1 AND holder = $2 AND token = $3`,
		r.h.key, r.h.holder, r.h.token)
	if err != nil {
		return fmt.Errorf("release the lock %s: %w", r.h.key, err)
	}
	return nil
}

func (k *keyedLocks) leave(key string, l *keyLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l.users--
	if l.users == 0 {
		delete(k.locks, key)
	}
}

// repositoryKey and environmentKey are the keys of the locks, and of
// their rows (quoted: PostgreSQL's text holds no NUL, and names are not
// trusted to keep out of a separator).
func repositoryKey(repository string) string { return "repository " + strconv.Quote(repository) }

// runKey is the key of the lock a run's release stage holds while it
// deploys, so that a duplicate of its event waits for it.
func runKey(runID string) string { return "run " + strconv.Quote(runID) }

func environmentKey(repository, environment string) string {
	return "environment " + strconv.Quote(repository) + " " + strconv.Quote(environment)
}
