// Package runcancel is how a stage learns that a run was cancelled and
// stops its work on it. Source's CancelRun publishes RunCancelRequested;
// each stage that runs work (build, test, release) has a durable consumer
// of it (servicekit, Spec.Cancels) whose handler records the cancellation
// in the stage's own database (Book.Record), so that a replica that claims
// the run later, or restarts, knows it. Work a worker holds on a run
// (Book.Hold) is cancelled at once when the cancellation is recorded in
// the same process, and otherwise at the worker's next look at the
// database (every Book's interval): a run held by another replica stops
// within that interval of the event's delivery.
package runcancel

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/sqldb"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the run_cancellations table.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("runcancel", migrationFiles)
}

// Expiry prunes the cancellations recorded more than keep ago: by then the
// run's events have left the streams (keep is at least their age).
func Expiry(keep time.Duration) sqldb.Expiry {
	return sqldb.Expiry{Table: "run_cancellations", Column: "recorded_at", Keep: keep}
}

// ErrCancelled is wrapped by the cause of a held run's context once the
// run is cancelled (Cause tells by whom).
var ErrCancelled = errors.New("the run was cancelled")

// Cancellation is one run's cancellation as a stage recorded it.
type Cancellation struct {
	RunID string
	// By is who asked ("token <id> (<name>)"); empty when unknown.
	By string
	At time.Time
}

// Reason says that the run was cancelled and by whom, for logs, failure
// reasons and events.
func (c Cancellation) Reason() string {
	if c.By == "" {
		return "cancelled"
	}
	return "cancelled by " + c.By
}

// cancelledError is the cause of a context cancelled by a cancellation.
type cancelledError struct{ c Cancellation }

func (e *cancelledError) Error() string { return "run " + e.c.RunID + " was " + e.c.Reason() }
func (e *cancelledError) Unwrap() error { return ErrCancelled }

// Cause is the cancellation that ended ctx (a context from Hold, or one
// derived from it), if one did.
func Cause(ctx context.Context) (Cancellation, bool) {
	var e *cancelledError
	if errors.As(context.Cause(ctx), &e) {
		return e.c, true
	}
	return Cancellation{}, false
}

// DefaultEvery is how often a held run's cancellation is looked up when
// New is given no interval.
const DefaultEvery = time.Second

// Book keeps a stage's record of cancelled runs and the runs its workers
// hold now.
type Book struct {
	db    *sqldb.DB
	every time.Duration
	log   *slog.Logger

	mu   sync.Mutex
	held map[string]map[*hold]struct{}
}

type hold struct{ cancel context.CancelCauseFunc }

// New keeps cancellations in db, which has the Migrations; a held run is
// looked up every interval (DefaultEvery when 0).
func New(db *sqldb.DB, every time.Duration, log *slog.Logger) *Book {
	if every <= 0 {
		every = DefaultEvery
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Book{db: db, every: every, log: log, held: map[string]map[*hold]struct{}{}}
}

// Record keeps c (the first cancellation of a run is kept; a repeated one
// changes nothing) and cancels the run's work held in this process.
func (b *Book) Record(ctx context.Context, c Cancellation) error {
	if c.At.IsZero() {
		c.At = time.Now()
	}
	_, err := b.db.ExecContext(ctx, `INSERT INTO run_cancellations (run_id, requested_by, recorded_at) VALUES ($1, $2, $3)
		ON CONFLICT (run_id) DO NOTHING`, c.RunID, c.By, sqldb.Nanos(c.At))
	if err != nil {
		return fmt.Errorf("record the cancellation of run %s: %w", c.RunID, err)
	}
	kept, ok, err := b.Lookup(ctx, c.RunID)
	if err != nil {
		return err
	}
	if ok {
		b.cancel(kept)
	}
	return nil
}

// Lookup reports whether run runID was cancelled, and how.
func (b *Book) Lookup(ctx context.Context, runID string) (Cancellation, bool, error) {
	c := Cancellation{RunID: runID}
	var at int64
	// Workers look every second: on SQLite, not through its one writer.
	err := b.db.Reader().QueryRowContext(ctx, `SELECT requested_by, recorded_at FROM run_cancellations WHERE run_id = $1`, runID).Scan(&c.By, &at)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Cancellation{}, false, nil
	case err != nil:
		return Cancellation{}, false, fmt.Errorf("look up the cancellation of run %s: %w", runID, err)
	}
	c.At = sqldb.Time(at)
	return c, true, nil
}

// Hold returns ctx cancelled, with a cause for which Cause reports the
// cancellation, once run runID is cancelled: at once if it already was,
// when Record is called for it in this process, or at the first look that
// finds it in the database. A look that fails is logged and tried at the
// next interval. release ends the hold; it must be called.
func (b *Book) Hold(ctx context.Context, runID string) (held context.Context, release func()) {
	held, cancel := context.WithCancelCause(ctx)
	h := &hold{cancel: cancel}
	b.mu.Lock()
	if b.held[runID] == nil {
		b.held[runID] = map[*hold]struct{}{}
	}
	b.held[runID][h] = struct{}{}
	b.mu.Unlock()

	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(b.every)
		defer tick.Stop()
		for {
			c, ok, err := b.Lookup(held, runID)
			switch {
			case ok:
				cancel(&cancelledError{c})
				return
			case err != nil && held.Err() == nil:
				b.log.Warn("could not look up whether the run was cancelled; looking again", slog.String("run_id", runID), slog.Any("error", err))
			}
			select {
			case <-done:
				return
			case <-held.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return held, func() {
		once.Do(func() {
			close(done)
			cancel(context.Canceled) // ends a look in flight
			<-stopped
			b.mu.Lock()
			delete(b.held[runID], h)
			if len(b.held[runID]) == 0 {
				delete(b.held, runID)
			}
			b.mu.Unlock()
		})
	}
}

// Do is how a stage works on a run it may be told to cancel: it runs work
// on a hold of run runID (Hold), unless the run was cancelled already. It
// returns the cancellation that prevented the work, or that stopped it
// (work returned an error once the hold ended its context), and otherwise
// work's error (or the lookup's). A cancellation does not explain an error
// when ctx itself ended because its lease was lost: the run is another
// worker's then, and it finds the cancellation when it takes the run.
func (b *Book) Do(ctx context.Context, runID string, work func(held context.Context) error) (*Cancellation, error) {
	held, release := b.Hold(ctx, runID)
	defer release()
	// Looked up on ctx: the hold's own look may end held meanwhile.
	c, ok, err := b.Lookup(ctx, runID)
	switch {
	case err != nil:
		return nil, err
	case ok:
		return &c, nil
	}
	err = work(held)
	if c, ok := Cause(held); ok && err != nil && !errors.Is(context.Cause(ctx), lease.ErrLost) {
		return &c, nil
	}
	return nil, err
}

// cancel cancels the held work of c's run.
func (b *Book) cancel(c Cancellation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for h := range b.held[c.RunID] {
		h.cancel(&cancelledError{c})
	}
}

// Handle is the handler of the stage's consumer of RunCancelRequested
// events (servicekit binds it): it records the cancellation.
func (b *Book) Handle(ctx context.Context, ev events.Event, _ events.Delivery) error {
	req, ok := ev.Payload.(*sourceeventsv1.RunCancelRequested)
	if !ok {
		return fmt.Errorf("%w: %s carries %T, not a RunCancelRequested", events.ErrPermanent, ev.Kind.Type, ev.Payload)
	}
	if err := b.Record(ctx, Cancellation{RunID: req.GetRunId(), By: req.GetRequestedBy(), At: ev.Time}); err != nil {
		return err
	}
	b.log.Info("run cancellation recorded", slog.String("run_id", req.GetRunId()), slog.String("by", req.GetRequestedBy()))
	return nil
}
