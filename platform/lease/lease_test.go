package lease_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/runner"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// scripted is a Lease whose renewals do what the test says.
type scripted struct {
	renewals atomic.Int32
	// renew answers renewal n (1-based); nil renews.
	renew    func(ctx context.Context, n int) error
	releases atomic.Int32
	release  func(ctx context.Context) error
}

func (s *scripted) Renew(ctx context.Context) error {
	n := int(s.renewals.Add(1))
	if s.renew == nil {
		return nil
	}
	return s.renew(ctx, n)
}

func (s *scripted) Release(ctx context.Context) error {
	s.releases.Add(1)
	if s.release == nil {
		return nil
	}
	return s.release(ctx)
}

// logTo is a logger that writes to b. The tests read b only once the
// renewals stopped (Stop waits for them), so it needs no lock.
func logTo(b *bytes.Buffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRenewsEveryHeartbeatUntilStopped(t *testing.T) {
	t.Parallel()
	l := &scripted{}
	work, k := lease.Keep(t.Context(), l, lease.Options{Every: 5 * time.Millisecond})
	waitFor(t, "three renewals", func() bool { return l.renewals.Load() >= 3 })
	if work.Err() != nil {
		t.Fatalf("the work was cancelled while its lease was renewed: %v", context.Cause(work))
	}
	k.Stop()
	n := l.renewals.Load()
	time.Sleep(30 * time.Millisecond)
	if got := l.renewals.Load(); got != n {
		t.Errorf("%d renewals after Stop", got-n)
	}
	if work.Err() == nil || errors.Is(context.Cause(work), lease.ErrLost) {
		t.Errorf("after Stop the work's context is %v (cause %v); want it ended, not as lost", work.Err(), context.Cause(work))
	}
	if l.releases.Load() != 0 {
		t.Error("Stop released the lease; only Release may")
	}
}

func TestALostLeaseCancelsTheWorkWithItsCause(t *testing.T) {
	t.Parallel()
	l := &scripted{renew: func(_ context.Context, n int) error {
		if n == 2 {
			return fmt.Errorf("build b-1 attempt 3: %w", lease.ErrLost)
		}
		return nil
	}}
	var log bytes.Buffer
	work, k := lease.Keep(t.Context(), l, lease.Options{Every: 5 * time.Millisecond, Log: logTo(&log)})
	defer k.Stop()
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the work goes on after its lease was lost")
	}
	cause := context.Cause(work)
	if !errors.Is(cause, lease.ErrLost) || !strings.Contains(cause.Error(), "build b-1 attempt 3") {
		t.Errorf("cause %v; want the renewal's error, wrapping ErrLost", cause)
	}
	time.Sleep(30 * time.Millisecond)
	if got := l.renewals.Load(); got != 2 {
		t.Errorf("%d renewals; want none after the one that found the lease lost", got)
	}
	k.Stop()
	if !errors.Is(context.Cause(work), lease.ErrLost) {
		t.Errorf("Stop replaced the cause: %v", context.Cause(work))
	}
	if log.String() != "" {
		t.Errorf("a lost lease is the work's business, not the log's: %s", log.String())
	}
}

func TestAFailedRenewalIsTriedAgain(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	l := &scripted{renew: func(_ context.Context, n int) error {
		if n <= 2 {
			return errors.New("database is locked")
		}
		return nil
	}}
	work, k := lease.Keep(t.Context(), l, lease.Options{Every: 5 * time.Millisecond, Log: logTo(&log)})
	waitFor(t, "a renewal after two failures", func() bool { return l.renewals.Load() >= 4 })
	k.Stop()
	if errors.Is(context.Cause(work), lease.ErrLost) {
		t.Error("a failed renewal cancelled the work as lost")
	}
	if got := strings.Count(log.String(), "database is locked"); got != 2 {
		t.Errorf("logged %d failed renewals; want 2:\n%s", got, log.String())
	}
}

// The lease is kept while the process stops: the work sees its context
// end, but renewals go on until the attempt stopped writing (Stop).
func TestRenewalsOutliveTheWorksContext(t *testing.T) {
	t.Parallel()
	l := &scripted{}
	parent, stopProcess := context.WithCancel(t.Context())
	work, k := lease.Keep(parent, l, lease.Options{Every: 5 * time.Millisecond})
	stopProcess()
	<-work.Done()
	if !errors.Is(context.Cause(work), context.Canceled) {
		t.Errorf("cause %v; want the parent's", context.Cause(work))
	}
	n := l.renewals.Load()
	waitFor(t, "renewals after the parent ended", func() bool { return l.renewals.Load() >= n+2 })
	k.Stop()
}

// Stop may be called from several places (a deferred call and an explicit
// one); each call returns only once no renewal is under way, and a
// renewal stuck in the database is cut short.
func TestStopIsIdempotentAndWaitsForTheLoop(t *testing.T) {
	t.Parallel()
	var inRenewal, renewalDone atomic.Bool
	l := &scripted{renew: func(ctx context.Context, _ int) error {
		inRenewal.Store(true)
		<-ctx.Done() // a renewal that hangs until it is cut short
		time.Sleep(20 * time.Millisecond)
		renewalDone.Store(true)
		return ctx.Err()
	}}
	// The heartbeat also bounds a renewal: a long one shows that Stop, not
	// the bound, cuts the stuck renewal short.
	const every = time.Second
	_, k := lease.Keep(t.Context(), l, lease.Options{Every: every})
	waitFor(t, "a renewal under way", inRenewal.Load)
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			k.Stop()
			if !renewalDone.Load() {
				t.Error("Stop returned while a renewal was under way")
			}
		})
	}
	wg.Wait()
	k.Stop()
	if took := time.Since(start); took > every/2 {
		t.Errorf("Stop took %v; the stuck renewal should have been cut short", took)
	}
	if got := l.renewals.Load(); got != 1 {
		t.Errorf("%d renewals; want the one", got)
	}
}

// A renewal that hangs is bounded by the heartbeat, so the next one
// comes on time.
func TestAHangingRenewalIsBoundedByTheHeartbeat(t *testing.T) {
	t.Parallel()
	l := &scripted{renew: func(ctx context.Context, n int) error {
		if n == 1 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	_, k := lease.Keep(t.Context(), l, lease.Options{Every: 10 * time.Millisecond})
	defer k.Stop()
	waitFor(t, "a renewal after the hanging one", func() bool { return l.renewals.Load() >= 2 })
}

func TestReleaseGivesTheJobUpAfterTheProcessStopped(t *testing.T) {
	t.Parallel()
	var released atomic.Bool
	l := &scripted{release: func(ctx context.Context) error {
		if ctx.Err() != nil {
			t.Error("Release got an ended context")
		}
		if d, ok := ctx.Deadline(); !ok || time.Until(d) > time.Second {
			t.Errorf("Release's context has no deadline within its timeout: %v, %v", d, ok)
		}
		released.Store(true)
		return nil
	}}
	parent, stopProcess := context.WithCancel(t.Context())
	work, k := lease.Keep(parent, l, lease.Options{Every: 5 * time.Millisecond, ReleaseTimeout: time.Second})
	stopProcess()
	k.Release()
	if !released.Load() || l.releases.Load() != 1 {
		t.Fatal("the lease was not released")
	}
	if work.Err() == nil {
		t.Error("the work's context is live after Release")
	}
	n := l.renewals.Load()
	time.Sleep(30 * time.Millisecond)
	if l.renewals.Load() != n {
		t.Error("renewals went on after Release")
	}
}

func TestReleaseLogsOnlyRealFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		logged bool
	}{
		{nil, false},
		{fmt.Errorf("test run t-1: %w", lease.ErrLost), false}, // already someone else's: nothing to give up
		{errors.New("connection refused"), true},
	} {
		var log bytes.Buffer
		l := &scripted{release: func(context.Context) error { return tc.err }}
		_, k := lease.Keep(t.Context(), l, lease.Options{Every: time.Hour, Log: logTo(&log)})
		k.Release()
		if got := strings.Contains(log.String(), "could not release the lease"); got != tc.logged {
			t.Errorf("release error %v: logged %v; want %v:\n%s", tc.err, got, tc.logged, log.String())
		}
	}
}

func TestKeepRefusesNoHeartbeat(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Every") {
			t.Errorf("Keep with no heartbeat: %v; want a panic naming Every", r)
		}
	}()
	lease.Keep(t.Context(), &scripted{}, lease.Options{})
}

func TestAcquireWaitsWhileHeld(t *testing.T) {
	t.Parallel()
	var tries []lease.Try
	answers := []lease.Try{lease.Held, lease.Raced, lease.Held, lease.Settled}
	start := time.Now()
	got, err := lease.Acquire(t.Context(), 20*time.Millisecond, func(context.Context) (int, lease.Try, error) {
		try := answers[len(tries)]
		tries = append(tries, try)
		return len(tries), try, nil
	})
	if err != nil || got != 4 {
		t.Fatalf("Acquire = %d, %v; want the fourth try's result", got, err)
	}
	// Two waits after Held; none after Raced.
	if took := time.Since(start); took < 40*time.Millisecond || took > 5*time.Second {
		t.Errorf("took %v; want two waits of 20ms", took)
	}
}

func TestAcquireStopsOnAnError(t *testing.T) {
	t.Parallel()
	errDB := errors.New("database is gone")
	calls := 0
	_, err := lease.Acquire(t.Context(), time.Hour, func(context.Context) (string, lease.Try, error) {
		calls++
		return "", lease.Held, errDB
	})
	if !errors.Is(err, errDB) || calls != 1 {
		t.Errorf("Acquire = %v after %d calls; want the error at once", err, calls)
	}
}

func TestAcquireEndsWithItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(t.Context())
	errStop := errors.New("the process is stopping")
	time.AfterFunc(20*time.Millisecond, func() { cancel(errStop) })
	got, err := lease.Acquire(ctx, time.Hour, func(context.Context) (string, lease.Try, error) {
		return "held by worker w-2", lease.Held, nil
	})
	if !errors.Is(err, errStop) || got != "held by worker w-2" {
		t.Errorf("Acquire = %q, %v; want the last result and the context's cause", got, err)
	}
}

// A worker cut off from its store cannot find its lease taken over: its
// renewals just fail. With Lapse, the work is cancelled as lost once no
// renewal succeeded for that long, before another worker may take the job
// over.
func TestRenewalsThatFailForLapseCancelTheWorkAsLost(t *testing.T) {
	t.Parallel()
	var cutOff atomic.Bool
	l := &scripted{renew: func(ctx context.Context, _ int) error {
		if cutOff.Load() {
			<-ctx.Done() // a store that does not answer
			return ctx.Err()
		}
		return nil
	}}
	const lapse = 500 * time.Millisecond
	var log bytes.Buffer
	work, k := lease.Keep(t.Context(), l, lease.Options{Every: 20 * time.Millisecond, Lapse: lapse, Log: logTo(&log)})
	defer k.Stop()
	waitFor(t, "two renewals", func() bool { return l.renewals.Load() >= 2 })
	// Renewals that succeed keep the work going past Lapse.
	time.Sleep(2 * lapse)
	if work.Err() != nil {
		t.Fatalf("the work was cancelled while its lease was renewed: %v", context.Cause(work))
	}
	cut := time.Now()
	cutOff.Store(true)
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the work goes on although no renewal succeeded for Lapse")
	}
	// The last renewal that succeeded began at most Every before the cut.
	// (Some slack for a busy machine's timers.)
	if took := time.Since(cut); took > lapse+250*time.Millisecond {
		t.Errorf("the work was cancelled %s after the store stopped answering; want at most Lapse (%s)", took, lapse)
	}
	if cause := context.Cause(work); !errors.Is(cause, lease.ErrLost) || !strings.Contains(cause.Error(), "no renewal succeeded for 500ms") {
		t.Errorf("cause %v; want a lapse, wrapping ErrLost", cause)
	}
	n := l.renewals.Load()
	time.Sleep(60 * time.Millisecond)
	if got := l.renewals.Load(); got != n {
		t.Errorf("%d renewals after the lease lapsed", got-n)
	}
}

// Lapse counts from Since until the first renewal: a lease claimed long
// before Keep lapses that much sooner.
func TestLapseCountsFromSince(t *testing.T) {
	t.Parallel()
	l := &scripted{renew: func(ctx context.Context, _ int) error { return errors.New("connection refused") }}
	start := time.Now()
	work, k := lease.Keep(t.Context(), l, lease.Options{Every: time.Hour, Lapse: 300 * time.Millisecond, Since: start.Add(-200 * time.Millisecond)})
	defer k.Stop()
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the lease did not lapse")
	}
	if took := time.Since(start); took > 250*time.Millisecond {
		t.Errorf("lapsed after %s; want about 100ms (Lapse from Since)", took)
	}
	if !errors.Is(context.Cause(work), lease.ErrLost) {
		t.Errorf("cause %v; want ErrLost", context.Cause(work))
	}
}

// A renewal that panics stops neither the process nor the renewals: it is
// logged and counted like a failed one, and the next heartbeat renews.
func TestARenewalThatPanicsIsTriedAgain(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	sup, err := runner.NewSupervisor(logTo(&logs), reg)
	if err != nil {
		t.Fatal(err)
	}
	l := &scripted{renew: func(_ context.Context, n int) error {
		if n == 1 {
			panic("a bad row")
		}
		return nil
	}}
	work, k := lease.Keep(t.Context(), l, lease.Options{Every: 5 * time.Millisecond, Log: logTo(&bytes.Buffer{}), Supervisor: sup})
	waitFor(t, "renewals after the panic", func() bool { return l.renewals.Load() >= 3 })
	k.Stop()
	if errors.Is(context.Cause(work), lease.ErrLost) {
		t.Errorf("the work was cancelled as lost: %v", context.Cause(work))
	}
	if !strings.Contains(logs.String(), "a bad row") || !strings.Contains(logs.String(), "task=\"lease renewal\"") {
		t.Errorf("the panic was not logged:\n%s", logs.String())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sluice_goroutine_panics_total Panics recovered in background loops (restarted after a back-off) and in goroutines of one job, by task.
# TYPE sluice_goroutine_panics_total counter
sluice_goroutine_panics_total{task="lease renewal"} 1
`), "sluice_goroutine_panics_total"); err != nil {
		t.Error(err)
	}
}
