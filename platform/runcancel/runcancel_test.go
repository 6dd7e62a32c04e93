package runcancel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openDB(t *testing.T) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), sqldbtest.URL(t), runcancel.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// waitDone waits up to within for ctx to end.
func waitDone(ctx context.Context, t *testing.T, within time.Duration, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(within):
		t.Fatalf("%s: the held context was not cancelled within %s", what, within)
	}
}

// Recording a cancellation ends the run's holds in this process at once,
// only that run's, with a cause that says who cancelled it; the first
// cancellation is kept.
func TestRecordCancelsTheRunsHoldsAtOnce(t *testing.T) {
	t.Parallel()
	b := runcancel.New(openDB(t), time.Hour, nil) // no look would find it in time
	held, release := b.Hold(t.Context(), "run-1")
	defer release()
	again, releaseAgain := b.Hold(t.Context(), "run-1")
	defer releaseAgain()
	other, releaseOther := b.Hold(t.Context(), "run-2")
	defer releaseOther()

	if err := b.Record(t.Context(), runcancel.Cancellation{RunID: "run-1", By: "token t1 (alice)"}); err != nil {
		t.Fatal(err)
	}
	waitDone(held, t, time.Second, "run-1")
	waitDone(again, t, time.Second, "run-1, its second hold")
	c, ok := runcancel.Cause(held)
	if !ok || c.RunID != "run-1" || c.Reason() != "cancelled by token t1 (alice)" || !errors.Is(context.Cause(held), runcancel.ErrCancelled) {
		t.Errorf("cause %v (%v, %v)", context.Cause(held), c, ok)
	}
	if other.Err() != nil {
		t.Error("another run's hold ended")
	}

	if err := b.Record(t.Context(), runcancel.Cancellation{RunID: "run-1", By: "token t2 (bob)"}); err != nil {
		t.Fatal(err)
	}
	kept, ok, err := b.Lookup(t.Context(), "run-1")
	if err != nil || !ok || kept.By != "token t1 (alice)" {
		t.Errorf("Lookup = %v, %v, %v; want alice's", kept, ok, err)
	}
	if _, ok, err := b.Lookup(t.Context(), "run-2"); err != nil || ok {
		t.Errorf("run-2 cancelled: %v, %v", ok, err)
	}
}

// A cancellation another replica recorded (another Book on the same
// database) ends a hold at its next look; a run cancelled before it is
// held ends the hold at the first.
func TestAHoldFindsACancellationRecordedElsewhere(t *testing.T) {
	t.Parallel()
	db := openDB(t)
	holder := runcancel.New(db, 50*time.Millisecond, nil)
	elsewhere := runcancel.New(db, time.Hour, nil)

	held, release := holder.Hold(t.Context(), "run-1")
	defer release()
	time.Sleep(120 * time.Millisecond) // a look or two found nothing
	if held.Err() != nil {
		t.Fatal("the hold ended before the run was cancelled")
	}
	if err := elsewhere.Record(t.Context(), runcancel.Cancellation{RunID: "run-1", By: "token t1 (alice)"}); err != nil {
		t.Fatal(err)
	}
	waitDone(held, t, 5*time.Second, "run-1")
	if c, ok := runcancel.Cause(held); !ok || c.By != "token t1 (alice)" {
		t.Errorf("Cause = %v, %v", c, ok)
	}

	late, releaseLate := holder.Hold(t.Context(), "run-1")
	defer releaseLate()
	waitDone(late, t, 5*time.Second, "run-1 held after its cancellation")
}

// Releasing a hold stops its looks (goleak checks) and cancels its
// context without a cancellation; a release twice is harmless.
func TestReleaseEndsAHold(t *testing.T) {
	t.Parallel()
	b := runcancel.New(openDB(t), 10*time.Millisecond, nil)
	held, release := b.Hold(t.Context(), "run-1")
	release()
	release()
	if held.Err() == nil {
		t.Error("a released hold's context goes on")
	}
	if _, ok := runcancel.Cause(held); ok {
		t.Error("a released hold says its run was cancelled")
	}
}

// The consumer's handler records a RunCancelRequested and refuses another
// payload for good.
func TestHandleRecordsRunCancelRequested(t *testing.T) {
	t.Parallel()
	b := runcancel.New(openDB(t), time.Hour, nil)
	ev, err := events.New(&sourceeventsv1.RunCancelRequested{
		RunId: "run-1", Repository: &sourceeventsv1.RepositoryRef{Id: "r", Name: "hello", Url: "/tmp/hello"}, RequestedBy: "token t1 (alice)",
	}, "run-1", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(t.Context(), ev, nil); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := b.Lookup(t.Context(), "run-1"); err != nil || !ok || c.By != "token t1 (alice)" || c.At.IsZero() {
		t.Errorf("Lookup = %v, %v, %v", c, ok, err)
	}
	repo := &sourceeventsv1.RepositoryRef{Id: "r", Name: "hello", Url: "/tmp/hello"}
	other, err := events.New(&sourceeventsv1.RunStarted{RunId: "run-2", Repository: repo}, "run-2", "run-2")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(t.Context(), other, nil); !errors.Is(err, events.ErrPermanent) {
		t.Errorf("Handle(RunStarted) = %v, want a permanent error", err)
	}
}

// Do runs no work for a run cancelled already, says which cancellation
// stopped the work it ran, and leaves work's error alone otherwise, or
// when the work's own context was lost with its lease.
func TestDoReportsTheCancellationThatPreventedOrStoppedTheWork(t *testing.T) {
	t.Parallel()
	b := runcancel.New(openDB(t), time.Hour, nil)
	if err := b.Record(t.Context(), runcancel.Cancellation{RunID: "before", By: "token t1 (alice)"}); err != nil {
		t.Fatal(err)
	}
	ran := false
	c, err := b.Do(t.Context(), "before", func(context.Context) error { ran = true; return nil })
	if ran || err != nil || c == nil || c.By != "token t1 (alice)" {
		t.Errorf("a run cancelled before: ran %v, %v, %v", ran, c, err)
	}

	c, err = b.Do(t.Context(), "during", func(held context.Context) error {
		if err := b.Record(t.Context(), runcancel.Cancellation{RunID: "during", By: "token t2 (bob)"}); err != nil {
			return err
		}
		<-held.Done()
		return held.Err()
	})
	if err != nil || c == nil || c.By != "token t2 (bob)" {
		t.Errorf("a run cancelled during the work: %v, %v", c, err)
	}

	boom := errors.New("boom")
	if c, err := b.Do(t.Context(), "plain", func(context.Context) error { return boom }); c != nil || !errors.Is(err, boom) {
		t.Errorf("work that fails: %v, %v", c, err)
	}

	lost, lose := context.WithCancelCause(t.Context())
	c, err = b.Do(lost, "lost", func(held context.Context) error {
		if err := b.Record(t.Context(), runcancel.Cancellation{RunID: "lost"}); err != nil {
			return err
		}
		<-held.Done()
		lose(lease.ErrLost)
		return held.Err()
	})
	if c != nil || err == nil {
		t.Errorf("a cancellation after the lease was lost: %v, %v; want the work's error", c, err)
	}
}
