package events_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/runner/runnertest"
)

// A handler that panics does not stop the process: its event is
// dead-lettered at once with the panic as the reason (the stack goes to
// the log), and the consumer goes on with the next event.
func TestConsumerDeadLettersAPanickingHandlerAndGoesOn(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := subscribeDeadLetters(t, e, "build", "build-runs")
	for _, id := range []string{"bad", "good"} {
		ev, err := events.New(runRequested(id), id, id)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := ev.Msg()
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	var logs syncBuffer
	var bad atomic.Int32
	handled := make(chan string, 2)
	reg := prometheus.NewRegistry()
	metrics, err := events.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cons := events.NewConsumer(e.js, slog.New(slog.NewJSONHandler(&logs, nil)), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "build-runs", Metrics: metrics},
		func(_ context.Context, ev events.Event, _ events.Delivery) error {
			if ev.ChainID == "bad" {
				bad.Add(1)
				panic("no step " + ev.ChainID) // as a bug in a handler would
			}
			handled <- ev.ChainID
			return nil
		})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cons.Run(runCtx) }()
	defer func() { stop(); <-done }()

	select {
	case id := <-handled:
		if id != "good" {
			t.Fatalf("handled %s", id)
		}
	case <-ctx.Done():
		t.Fatal("the event after the panic was not handled")
	}
	m, err := dead.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if got, want := m.Header.Get(events.HeaderDeadLetterReason), "panic: no step bad"; got != want {
		t.Errorf("reason %q; want %q", got, want)
	}
	// Counted once the dead letter is stored, a moment after it arrives.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sluice_events_deadlettered_total Messages dead-lettered to the DEADLETTER stream, by consumer (or outbox) and cause (panic, invalid, permanent, exhausted, interrupted, refused).
# TYPE sluice_events_deadlettered_total counter
sluice_events_deadlettered_total{cause="panic",consumer="build-runs"} 1
`), "sluice_events_deadlettered_total")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Error(err)
			break
		}
	}
	if n := bad.Load(); n != 1 {
		t.Errorf("the panicking handler ran %d times; want once", n)
	}
	out := logs.String()
	for _, want := range []string{`"msg":"event handler panicked`, "goroutine ", "events_test.TestConsumerDeadLettersAPanickingHandlerAndGoesOn"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log has no %q:\n%s", want, out)
		}
	}
}

// subscribeDeadLetters subscribes to the dead letters of service's durable.
func subscribeDeadLetters(t *testing.T, e env, service, durable string) *nats.Subscription {
	t.Helper()
	dead, err := e.js.Conn().SubscribeSync(events.DeadLetterSubject(service, durable))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Unsubscribe() })
	return dead
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// panickyHandler is a log handler that panics on one message, as a broken
// log sink (or a value that cannot be logged) would; the rest goes to w.
type panickyHandler struct {
	slog.Handler
	msg string
}

func (h panickyHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		panic("log sink broke on " + r.Message)
	}
	return h.Handler.Handle(ctx, r)
}

func (h panickyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return panickyHandler{Handler: h.Handler.WithAttrs(as), msg: h.msg}
}

// A panic in the consumer's own calls around a handler (here the log of a
// failed delivery, before its Nak) does not stop the process: it is
// counted under the consumer's Supervisor, and the message, not settled,
// is dead-lettered as a handler's panic would be.
func TestConsumerDeadLettersAMessageWhoseSettlingPanicked(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := subscribeDeadLetters(t, e, "build", "build-runs")
	ev, err := events.New(runRequested("r1"), "r1", "r1")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := ev.Msg()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	sup := runnertest.New(t)
	var logs syncBuffer
	log := slog.New(panickyHandler{Handler: slog.NewJSONHandler(&logs, nil), msg: "handler failed; will retry"})
	var handled atomic.Int32
	var handlerSup atomic.Pointer[runner.Supervisor]
	cons := events.NewConsumer(e.js, log, events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "build-runs", Supervisor: sup.Supervisor},
		func(ctx context.Context, _ events.Event, _ events.Delivery) error {
			handled.Add(1)
			handlerSup.Store(runner.FromContext(ctx))
			return errors.New("database is down")
		})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cons.Run(runCtx) }()
	defer func() { stop(); <-done }()

	dl, err := dead.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if got, want := dl.Header.Get(events.HeaderDeadLetterReason), "panic: log sink broke on handler failed; will retry"; got != want {
		t.Errorf("reason %q; want %q", got, want)
	}
	if n := sup.Panics(t, "event delivery"); n != 1 {
		t.Errorf("%v panics of the delivery counted; want 1", n)
	}
	if n := handled.Load(); n != 1 {
		t.Errorf("the handler ran %d times; want once", n)
	}
	if handlerSup.Load() != sup.Supervisor {
		t.Error("the handler's context does not carry the consumer's Supervisor")
	}
}
