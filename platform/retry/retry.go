// Package retry is how Sluice waits between tries: an exponential back-off
// with jitter, a loop that tries until an operation succeeds or its context
// ends, and a sleep that a context cuts short.
//
// The loop and the exponential schedule are github.com/cenkalti/backoff/v5;
// this package fixes the choices every caller would otherwise make again:
// a wait never exceeds Backoff.Max (jitter only shortens it), there is no
// overall time limit unless one is asked for, the operation gets the
// context, and an error that ends the loop keeps the operation's last error
// as well as the context's.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// DefaultInitial is the first wait of a Backoff that names none.
const DefaultInitial = 100 * time.Millisecond

// Backoff is an exponential schedule: the wait after the first failure is
// Initial, and each later one twice the one before, up to Max.
type Backoff struct {
	// Initial is the first wait (DefaultInitial when 0).
	Initial time.Duration
	// Max caps every wait. When it is less than Initial (0, say) the
	// waits do not grow: every wait is Initial.
	Max time.Duration
	// Jitter is the share of each wait taken off at random, 0 to 1
	// (0.1: up to 10% shorter), so that clients that failed together do
	// not all try again at the same moment. 0 is no jitter.
	Jitter float64
}

func (b Backoff) initial() time.Duration {
	if b.Initial <= 0 {
		return DefaultInitial
	}
	return b.Initial
}

func (b Backoff) max() time.Duration { return max(b.Max, b.initial()) }

func (b Backoff) jitter() float64 { return min(max(b.Jitter, 0), 1) }

// exponential is the library's schedule without its own randomisation,
// which may lengthen a wait past Max; jittered applies ours.
func (b Backoff) exponential() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval: b.initial(),
		Multiplier:      2,
		MaxInterval:     b.max(),
	}
}

// Delay is the wait after failed try n (1 for the first failure), for a
// schedule kept outside a loop (a next-attempt time in a database). A
// number below 1 counts as 1.
func (b Backoff) Delay(n int) time.Duration {
	exp := b.exponential()
	d := exp.NextBackOff()
	for i := 1; i < n && d < b.max(); i++ { // the cap is reached after a few doublings
		d = exp.NextBackOff()
	}
	return b.shorten(d)
}

func (b Backoff) shorten(d time.Duration) time.Duration {
	if j := b.jitter(); j > 0 {
		d -= time.Duration(float64(d) * j * rand.Float64())
	}
	return d
}

// schedule is a backoff.BackOff that follows b.
type schedule struct {
	b   Backoff
	exp *backoff.ExponentialBackOff
}

func (s *schedule) NextBackOff() time.Duration { return s.b.shorten(s.exp.NextBackOff()) }

func (s *schedule) Reset() { s.exp.Reset() }

// Option changes how Do retries.
type Option func(*options)

type options struct {
	giveUpAfter time.Duration
	onRetry     func(try int, err error, wait time.Duration)
}

// GiveUpAfter ends the retries once the next try would start more than d
// after the first one; Do then returns the last try's error. Without it
// Do retries until its context ends.
func GiveUpAfter(d time.Duration) Option {
	return func(o *options) { o.giveUpAfter = d }
}

// OnRetry has fn told about each failed try that will be retried: its
// number (1 for the first), its error and the wait before the next.
func OnRetry(fn func(try int, err error, wait time.Duration)) Option {
	return func(o *options) { o.onRetry = fn }
}

// Permanent marks err as one no retry can cure: Do returns it (unwrapped)
// at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return backoff.Permanent(err)
}

// Do runs op until it returns nil, returns an error marked Permanent, ctx
// ends or GiveUpAfter passes, waiting between tries as b says. op gets
// ctx. When ctx ends between tries the error wraps both op's last error
// and context.Cause(ctx), so errors.Is finds either.
func Do(ctx context.Context, b Backoff, op func(context.Context) error, opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var last error
	try := 0
	retryOpts := []backoff.RetryOption{
		backoff.WithBackOff(&schedule{b: b, exp: b.exponential()}),
		backoff.WithMaxElapsedTime(o.giveUpAfter), // 0: no limit
		backoff.WithNotify(func(err error, wait time.Duration) {
			if o.onRetry != nil {
				o.onRetry(try, err, wait)
			}
		}),
	}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		try++
		last = op(ctx)
		return struct{}{}, last
	}, retryOpts...)
	if err == nil {
		return nil
	}
	// The library returns the context's cause alone when ctx ended; keep
	// what the operation said too.
	if cause := context.Cause(ctx); cause != nil && errors.Is(err, cause) && last != nil && !errors.Is(last, cause) {
		return fmt.Errorf("%w (gave up: %w)", last, cause)
	}
	return err
}

// Sleep waits d, or less when ctx ends first; it reports whether the whole
// wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
