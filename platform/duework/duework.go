// Package duework runs work kept in a service's store that falls due at
// set times and is attempted until it succeeds or is given up: notify's
// deliveries, the commit statuses and the releases it makes on forges.
//
// The items stay in the service's own table. The service claims the due
// ones (leasing them, so that no other worker or replica takes them until
// the lease ends), attempts one and records its outcome (done, due again
// later, or given up); this package owns the loop around that: how many
// attempts run at once, when to look again (at the next due item, when
// woken, and at least every IdlePoll for what other replicas queued), and
// that a panic in one attempt stops neither the loop nor the others.
package duework

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/runner"
)

// IdlePoll is how often a loop looks for due items when nothing wakes it:
// other replicas may have queued some.
const IdlePoll = time.Second

// Queue is a service's table of due work, of items T.
type Queue[T any] interface {
	// Claim leases up to limit items due at now, and returns them.
	Claim(ctx context.Context, now time.Time, limit int) ([]T, error)
	// NextDue is when the earliest item not yet done is due (or its lease
	// ends); with none, an error wrapping apierror.ErrNotFound.
	NextDue(ctx context.Context) (time.Time, error)
	// Attempt makes one attempt at item and records its outcome, logging
	// to log. It is given the loop's context, and decides itself whether
	// an attempt under way outlives it.
	Attempt(ctx context.Context, log *slog.Logger, item T)
}

// Loop attempts a Queue's due items, up to Workers at once.
type Loop[T any] struct {
	// Name says what the items are ("deliveries"), in logs.
	Name    string
	Queue   Queue[T]
	Workers int
	Log     *slog.Logger
	// Poll is how often the loop looks for due items when nothing wakes
	// it; 0: IdlePoll.
	Poll time.Duration
	// Supervisor guards each attempt; nil: runner's default.
	Supervisor *runner.Supervisor
	wake       chan struct{}
	once       sync.Once
}

func (l *Loop[T]) woken() chan struct{} {
	l.once.Do(func() { l.wake = make(chan struct{}, 1) })
	return l.wake
}

// Wake makes the loop look for due items now: some were queued.
func (l *Loop[T]) Wake() {
	select {
	case l.woken() <- struct{}{}:
	default:
	}
}

// Run attempts due items until ctx ends, then waits for the attempts under
// way (each bounds itself) so that their outcomes are recorded.
func (l *Loop[T]) Run(ctx context.Context) error {
	workers := max(l.Workers, 1)
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With(slog.String("component", l.Name))
	slots := make(chan struct{}, workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		wait := l.Poll
		if wait <= 0 {
			wait = IdlePoll
		}
		if free := cap(slots) - len(slots); free > 0 {
			claimed, err := l.Queue.Claim(ctx, time.Now(), free)
			if err != nil && ctx.Err() == nil {
				log.Warn("taking due "+l.Name+" failed; retrying", slog.Any("error", err))
			}
			for _, item := range claimed {
				slots <- struct{}{}
				wg.Go(func() {
					defer func() {
						<-slots
						l.Wake()
					}()
					// A panic leaves the item leased: it is attempted again
					// when its lease ends.
					l.Supervisor.Guard(l.Name, func() { l.Queue.Attempt(ctx, log, item) })
				})
			}
			next, err := l.Queue.NextDue(ctx)
			switch {
			case err == nil:
				wait = min(wait, max(time.Until(next), 10*time.Millisecond))
			case !errors.Is(err, apierror.ErrNotFound) && ctx.Err() == nil:
				log.Warn("finding the next due of "+l.Name+" failed", slog.Any("error", err))
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-l.woken():
			t.Stop()
		case <-t.C:
		}
	}
}
