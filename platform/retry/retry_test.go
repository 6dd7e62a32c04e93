package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/retry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDelayDoublesUpToMax(t *testing.T) {
	t.Parallel()
	b := retry.Backoff{Initial: time.Second, Max: 5 * time.Second}
	for n, want := range map[int]time.Duration{
		-3: time.Second, 0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		4: 5 * time.Second, 5: 5 * time.Second, 1 << 30: 5 * time.Second,
	} {
		if got := b.Delay(n); got != want {
			t.Errorf("Delay(%d) = %v; want %v", n, got, want)
		}
	}
}

func TestDelayWithoutMaxIsConstant(t *testing.T) {
	t.Parallel()
	for _, b := range []retry.Backoff{{Initial: 250 * time.Millisecond}, {Initial: 250 * time.Millisecond, Max: time.Millisecond}} {
		for n := 1; n < 5; n++ {
			if got := b.Delay(n); got != 250*time.Millisecond {
				t.Errorf("%+v: Delay(%d) = %v; want 250ms every time", b, n, got)
			}
		}
	}
	if got := (retry.Backoff{}).Delay(3); got != retry.DefaultInitial {
		t.Errorf("zero Backoff: Delay(3) = %v; want %v", got, retry.DefaultInitial)
	}
}

// Jitter only shortens a wait, so Max stays a real cap, and it does spread
// the waits out.
func TestDelayJitterShortensWithinItsShare(t *testing.T) {
	t.Parallel()
	b := retry.Backoff{Initial: time.Second, Max: 5 * time.Second, Jitter: 0.1}
	seen := map[time.Duration]bool{}
	for range 500 {
		for n, full := range map[int]time.Duration{1: time.Second, 3: 4 * time.Second, 9: 5 * time.Second} {
			got := b.Delay(n)
			if got > full || got < full-full/10 {
				t.Fatalf("Delay(%d) = %v; want within 10%% below %v", n, got, full)
			}
			seen[got] = true
		}
	}
	if len(seen) < 100 {
		t.Errorf("only %d distinct delays in 1500; the jitter does not spread them", len(seen))
	}
	wild := retry.Backoff{Initial: time.Second, Jitter: 7} // clamped to 1
	for range 100 {
		if got := wild.Delay(1); got < 0 || got > time.Second {
			t.Fatalf("Jitter 7: Delay = %v; want 0 to 1s", got)
		}
	}
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	errBusy := errors.New("busy")
	tries := 0
	var notified []int
	var waits []time.Duration
	start := time.Now()
	err := retry.Do(t.Context(), retry.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}, func(context.Context) error {
		tries++
		if tries < 5 {
			return errBusy
		}
		return nil
	}, retry.OnRetry(func(try int, err error, wait time.Duration) {
		if !errors.Is(err, errBusy) {
			t.Errorf("OnRetry got %v", err)
		}
		notified = append(notified, try)
		waits = append(waits, wait)
	}))
	if err != nil {
		t.Fatalf("Do = %v", err)
	}
	if tries != 5 {
		t.Errorf("%d tries; want 5", tries)
	}
	if len(notified) != 4 || notified[0] != 1 || notified[3] != 4 {
		t.Errorf("OnRetry tries %v; want 1 2 3 4", notified)
	}
	want := []time.Duration{10, 20, 40, 40}
	for i, w := range waits {
		if w != want[i]*time.Millisecond {
			t.Errorf("wait %d = %v; want %v", i+1, w, want[i]*time.Millisecond)
		}
	}
	if took := time.Since(start); took < 110*time.Millisecond {
		t.Errorf("took %v; the waits add up to 110ms", took)
	}
}

func TestDoStopsAtAPermanentError(t *testing.T) {
	t.Parallel()
	errDenied := errors.New("permission denied")
	tries := 0
	err := retry.Do(t.Context(), retry.Backoff{Initial: time.Hour}, func(context.Context) error {
		tries++
		return retry.Permanent(errDenied)
	})
	if err != errDenied { //nolint:errorlint // the error must come back unwrapped
		t.Errorf("Do = %v; want the permanent error itself", err)
	}
	if tries != 1 {
		t.Errorf("%d tries; want 1", tries)
	}
	if retry.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
}

// A context that ends between tries ends Do with both errors: what the
// operation last said (for the log) and why Do stopped.
func TestDoEndsWithItsContext(t *testing.T) {
	t.Parallel()
	errDown := errors.New("nats: no servers available")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := retry.Do(ctx, retry.Backoff{Initial: time.Hour}, func(context.Context) error { return errDown })
	if !errors.Is(err, errDown) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Do = %v; want it to wrap the last error and the deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Do returned after %v; want it to stop when the context ends", took)
	}

	// An operation that fails because the context ended (op gets Do's
	// context) is not repeated in the error.
	ctx, cancel = context.WithCancel(t.Context())
	err = retry.Do(ctx, retry.Backoff{Initial: time.Millisecond}, func(ctx context.Context) error {
		cancel()
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) || err.Error() != context.Canceled.Error() {
		t.Errorf("Do = %q; want just %q", err, context.Canceled)
	}
}

func TestDoGivesUpAfter(t *testing.T) {
	t.Parallel()
	errNo := errors.New("503 Service Unavailable")
	tries := 0
	start := time.Now()
	err := retry.Do(t.Context(), retry.Backoff{Initial: 50 * time.Millisecond}, func(context.Context) error {
		tries++
		return errNo
	}, retry.GiveUpAfter(120*time.Millisecond))
	if err != errNo { //nolint:errorlint // the last error, as is
		t.Errorf("Do = %v; want the last error", err)
	}
	// Tries at 0, 50 and 100ms; the next would start after 120ms. (A slow
	// machine may start the second try late enough to skip the third.)
	if tries < 2 || tries > 3 {
		t.Errorf("%d tries; want 3", tries)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
}

func TestSleep(t *testing.T) {
	t.Parallel()
	start := time.Now()
	if !retry.Sleep(t.Context(), 20*time.Millisecond) {
		t.Error("Sleep = false; want true after the whole wait")
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("Sleep returned after %v", took)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	start = time.Now()
	if retry.Sleep(ctx, time.Hour) {
		t.Error("Sleep = true; want false when the context ends")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Sleep returned after %v; want it cut short", took)
	}
}
