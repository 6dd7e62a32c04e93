// Package lease is how a worker holds a job that several replicas could
// run: a row in the job's own table names the worker and when its lease
// lapses. The worker claims the job (or takes it over once the holder's
// lease lapsed), renews the lease every heartbeat while it works, stops
// when a renewal finds another worker took the job over, and gives the job
// up when it stops without finishing, so that another worker may take it
// over at once. A worker that finds the job held by a live worker waits.
// A worker that cannot renew at all (cut off from its database) stops its
// work once the lease may have lapsed (Options.Lapse), so that it never
// works beside the worker that takes the job over.
//
// The rows stay in each service's own table: a service implements Lease
// (renew and release its row) and the claim itself; this package owns the
// renewal loop, the cancellation of work whose lease was lost, the release
// and the wait while another worker holds the job.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/platform/runner"
)

// ErrLost is what a Lease's methods wrap when the worker no longer holds
// the job: another worker took it over (its lease had lapsed), or the job
// ended. Work whose lease is kept with Keep is cancelled with such an
// error as the cause.
var ErrLost = errors.New("lease lost: another worker took the job over")

// Lease is one worker's hold on one job, kept in the job's row.
type Lease interface {
	// Renew extends the lease. It returns an error wrapping ErrLost when
	// the worker no longer holds the job.
	Renew(ctx context.Context) error
	// Release gives the job up unfinished, so that another worker may
	// take it over at once rather than when the lease lapses.
	Release(ctx context.Context) error
}

// DefaultReleaseTimeout bounds Keeper.Release when Options names no bound.
const DefaultReleaseTimeout = 10 * time.Second

// Options tune Keep.
type Options struct {
	// Every is the time between renewals, the heartbeat; it also bounds
	// each renewal. It must be well under the lease's duration.
	Every time.Duration
	// ReleaseTimeout bounds Release (DefaultReleaseTimeout when 0).
	ReleaseTimeout time.Duration
	// Log is told about renewals that failed and will be tried again, and
	// about a release that failed; nil discards.
	Log *slog.Logger
	// Lapse, when positive, bounds how long the worker trusts a lease it
	// could not renew: once Lapse has passed since the last renewal that
	// succeeded began (or since Since, for the first), the work's context
	// is cancelled with an error wrapping ErrLost and the renewals stop,
	// whether the renewals found the lease taken over or could not reach
	// the store at all (a worker cut off from its database). Set it to the
	// lease's duration less the time the work needs to stop, so that the
	// work has stopped before another worker may take the job over. Zero:
	// failed renewals are tried again for ever, and only a renewal that
	// finds the lease lost ends the work.
	Lapse time.Duration
	// Since is when the lease was claimed (or last renewed): Lapse counts
	// from it until the first renewal. Zero: when Keep is called.
	Since time.Time
	// Supervisor guards each renewal: one that panics is logged and
	// counted, and the next heartbeat renews again (nil: runner's
	// default).
	Supervisor *runner.Supervisor
}

// Keeper renews a lease; Keep makes one.
type Keeper struct {
	lease Lease
	opts  Options
	log   *slog.Logger
	// values is Keep's context without its cancellation, for Release.
	values  context.Context
	cancel  context.CancelCauseFunc
	stopRen context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// errRenewalPanicked is a renewal that panicked: like a failed one, it is
// tried again at the next heartbeat.
var errRenewalPanicked = errors.New("lease: the renewal panicked")

// errStopped ends the work's context once Stop was called (unless the
// lease was lost first).
var errStopped = errors.New("lease: work stopped")

// Keep renews l every opts.Every in a goroutine of its own until Stop (or
// Release), and returns the context to do the work in: ctx, also cancelled
// with the renewal's error (wrapping ErrLost) as its cause when a renewal
// finds the lease lost. Renewals go on after ctx ends for another reason,
// the process stopping say, until Stop: a worker keeps its lease while it
// writes its last lines, and no takeover starts under its feet. So Stop or
// Release must be called, once the attempt stopped writing.
func Keep(ctx context.Context, l Lease, opts Options) (context.Context, *Keeper) {
	if opts.Every <= 0 {
		panic(fmt.Sprintf("lease.Keep: Every is %v; it must be positive", opts.Every))
	}
	if opts.ReleaseTimeout <= 0 {
		opts.ReleaseTimeout = DefaultReleaseTimeout
	}
	if opts.Since.IsZero() {
		opts.Since = time.Now()
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	work, cancel := context.WithCancelCause(ctx)
	renewCtx, stopRen := context.WithCancel(context.WithoutCancel(ctx))
	h := &Keeper{lease: l, opts: opts, log: log, values: context.WithoutCancel(ctx), cancel: cancel, stopRen: stopRen, done: make(chan struct{})}
	go h.renew(renewCtx)
	return work, h
}

func (h *Keeper) renew(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.opts.Every)
	defer t.Stop()
	// held is when the lease lapses unless a renewal succeeds (Lapse).
	held := h.opts.Since.Add(h.opts.Lapse)
	lt := time.NewTimer(time.Until(held))
	defer lt.Stop()
	lapse := lt.C
	if h.opts.Lapse <= 0 {
		lt.Stop()
		lapse = nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-lapse:
			h.lapsed()
			return
		case <-t.C:
		}
		begun := time.Now()
		bound := h.opts.Every
		if h.opts.Lapse > 0 {
			// A renewal that ends after the lapse would come too late.
			bound = min(bound, time.Until(held))
		}
		rctx, cancel := context.WithTimeout(ctx, bound)
		var err error
		if h.opts.Supervisor.Guard("lease renewal", func() { err = h.lease.Renew(rctx) }) {
			err = errRenewalPanicked
		}
		cancel()
		switch {
		case errors.Is(err, ErrLost):
			h.cancel(err)
			return
		case err == nil:
			held = begun.Add(h.opts.Lapse)
			if lapse != nil {
				lt.Reset(time.Until(held))
			}
		case ctx.Err() != nil:
		case h.opts.Lapse > 0 && !time.Now().Before(held):
			h.lapsed()
			return
		default:
			h.log.Warn("could not renew the lease; trying again at the next heartbeat", slog.Any("error", err))
		}
	}
}

// lapsed cancels the work: no renewal succeeded for Options.Lapse.
func (h *Keeper) lapsed() {
	err := fmt.Errorf("no renewal succeeded for %s, so the lease may have lapsed: %w", h.opts.Lapse, ErrLost)
	h.log.Warn("the lease could not be renewed in time; stopping the work", slog.Any("error", err))
	h.cancel(err)
}

// Stop ends the renewals, waits until none is under way, and cancels the
// work's context (whose cause stays the lost lease if it was lost). The
// lease then lapses on its own unless released. Stop may be called any
// number of times, from any goroutine; every call waits.
func (h *Keeper) Stop() {
	h.once.Do(h.stopRen)
	<-h.done
	h.cancel(errStopped)
}

// Release stops the renewals and gives the job up, within
// Options.ReleaseTimeout even when the context Keep was given has ended.
// A lease found lost is not an error; another failure is logged (the
// lease then lapses on its own).
func (h *Keeper) Release() {
	h.Stop()
	ctx, cancel := context.WithTimeout(h.values, h.opts.ReleaseTimeout)
	defer cancel()
	if err := h.lease.Release(ctx); err != nil && !errors.Is(err, ErrLost) {
		h.log.Warn("could not release the lease; another worker takes the job over when it lapses", slog.Any("error", err))
	}
}

// Try is what one attempt to claim a job found.
type Try int

// What a claim attempt may find.
const (
	// Settled: the attempt decided it (the job is claimed, or there is
	// nothing to do); Acquire returns.
	Settled Try = iota
	// Raced: another worker changed the job between the attempt's read and
	// its write; Acquire tries again at once.
	Raced
	// Held: a live worker holds the job; Acquire waits, then tries again
	// (the holder may finish, or stop renewing so its lease lapses).
	Held
)

// Acquire calls claim until it reports Settled or fails, waiting poll
// after each Held. It returns claim's last result; when ctx ends while it
// waits, that result with context.Cause(ctx).
func Acquire[T any](ctx context.Context, poll time.Duration, claim func(context.Context) (T, Try, error)) (T, error) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		v, try, err := claim(ctx)
		if err != nil || try == Settled {
			return v, err
		}
		if try == Raced {
			continue
		}
		if t == nil {
			t = time.NewTimer(poll)
		} else {
			t.Reset(poll)
		}
		select {
		case <-ctx.Done():
			return v, context.Cause(ctx)
		case <-t.C:
		}
	}
}
