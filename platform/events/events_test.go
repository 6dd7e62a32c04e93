package events_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/sqldb"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.KnownLeaks()...) }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func runRequested(runID string) *sourceeventsv1.RunRequested {
	return &sourceeventsv1.RunRequested{
		RunId:      runID,
		Repository: &sourceeventsv1.RepositoryRef{Id: "r1", Name: "hello", Url: "/tmp/hello"},
		Commit:     "0123456789abcdef0123456789abcdef01234567",
		Branch:     "main",
		Pipeline:   &sourcev1.Pipeline{Build: &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "true"}}}},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	ev, err := events.New(runRequested("run-1"), "run-1", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	m, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "sluice.source.run.requested" || m.Header.Get("ce-type") != "dev.cdevents.pipelinerun.queued.0.3.0" ||
		m.Header.Get(nats.MsgIdHdr) != ev.ID || m.Header.Get("ce-specversion") != "1.0" || m.Header.Get("ce-source") != "/sluice/source" {
		t.Fatalf("headers: %s %v", m.Subject, m.Header)
	}
	got, err := events.Decode(m.Subject, m.Header, m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.ChainID != "run-1" || !proto.Equal(got.Payload, ev.Payload) || !got.Time.Equal(ev.Time) {
		t.Fatalf("decoded %+v", got)
	}
	if got.Received == nil || string(got.Received.Data) != string(m.Data) || got.Received.Subject != m.Subject {
		t.Fatalf("the received message is not kept as it came: %+v", got.Received)
	}
}

func TestNewRejectsInvalidPayload(t *testing.T) {
	bad := runRequested("run-1")
	bad.Commit = "not-a-sha"
	if _, err := events.New(bad, "run-1", "run-1"); !errors.Is(err, events.ErrInvalidEvent) {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	h := nats.Header{}
	h.Set("ce-type", "dev.cdevents.pipelinerun.queued.0.3.0")
	if _, err := events.Decode("x", h, []byte("{")); !errors.Is(err, events.ErrInvalidEvent) {
		t.Fatalf("err = %v", err)
	}
	h.Set("ce-type", "nope")
	if _, err := events.Decode("x", h, []byte("{}")); !errors.Is(err, events.ErrInvalidEvent) {
		t.Fatalf("err = %v", err)
	}
}

func TestCatalogueIsConsistent(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range events.Catalogue() {
		if seen[k.Type] || seen[k.Subject] {
			t.Errorf("duplicate %s / %s", k.Type, k.Subject)
		}
		seen[k.Type], seen[k.Subject] = true, true
		if k.Stream() == "" {
			t.Errorf("%s: no stream for service %q", k.Type, k.Service)
		}
		if got, err := events.KindOf(k.NewPayload()); err != nil || got.Type != k.Type {
			t.Errorf("KindOf(%s) = %v, %v", k.PayloadName(), got.Type, err)
		}
	}
}

type env struct {
	js  jetstream.JetStream
	db  *sqldb.DB
	srv *natstest.Server
}

func setup(t *testing.T) env {
	t.Helper()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := natsprovision.ApplyAll(ctx, js, deploy.NATS(), natsprovision.Options{}); err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "svc.db"), events.Migrations())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return env{js: js, db: db, srv: srv}
}

func enqueue(t *testing.T, db *sqldb.DB, evs ...events.Event) {
	t.Helper()
	err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		for _, ev := range evs {
			if err := events.Enqueue(context.Background(), tx, ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOutboxPublishesInOrderAndConsumerIsIdempotent(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var evs []events.Event
	for _, id := range []string{"a", "b", "c"} {
		ev, err := events.New(runRequested(id), id, id)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	enqueue(t, e.db, evs...)
	relay := events.NewRelay(e.db, e.js, quiet())
	relayCtx, stopRelay := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); relay.Run(relayCtx) }()
	relay.Kick()

	// The build-runs consumer (declared in deploy/nats) gets them in order.
	var mu sync.Mutex
	var got []string
	handled := make(chan struct{}, 10)
	cons := events.NewConsumer(e.js, quiet(), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "build-runs"},
		func(ctx context.Context, ev events.Event, _ events.Delivery) error {
			first := false
			err := e.db.InTx(ctx, func(tx *sql.Tx) error {
				var err error
				first, err = events.MarkProcessed(ctx, tx, "build-runs", ev.ID)
				return err
			})
			if err != nil {
				return err
			}
			if first {
				mu.Lock()
				rr, ok := ev.Payload.(*sourceeventsv1.RunRequested)
				if !ok {
					return fmt.Errorf("payload %T", ev.Payload)
				}
				got = append(got, rr.GetRunId())
				mu.Unlock()
			}
			handled <- struct{}{}
			return nil
		})
	consCtx, stopCons := context.WithCancel(ctx)
	wg.Add(1)
	go func() { defer wg.Done(); _ = cons.Run(consCtx) }()
	for range 3 {
		select {
		case <-handled:
		case <-ctx.Done():
			t.Fatal("events not handled")
		}
	}
	// The same event again (a redelivery, or a relay publishing it twice
	// after a crash beyond the dedup window) has no second effect.
	m, _ := evs[0].Msg()
	m.Header.Set(nats.MsgIdHdr, "another-id")
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handled:
	case <-ctx.Done():
		t.Fatal("duplicate not handled")
	}
	stopCons()
	stopRelay()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("handled %v, want [a b c] once each", got)
	}
	if n, err := events.Pending(ctx, e.db); err != nil || n != 0 {
		t.Fatalf("outbox pending = %d, %v", n, err)
	}
}

func TestOutboxSurvivesNATSOutage(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e.srv.Stop()
	ev, _ := events.New(runRequested("x"), "x", "x")
	enqueue(t, e.db, ev)
	relay := events.NewRelay(e.db, e.js, quiet())
	relayCtx, stopRelay := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); relay.Run(relayCtx) }()
	time.Sleep(300 * time.Millisecond)
	if n, _ := events.Pending(ctx, e.db); n != 1 {
		t.Fatalf("pending while NATS is down = %d, want 1", n)
	}
	e.srv.Restart(t)
	for {
		n, err := events.Pending(ctx, e.db)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("outbox never drained after NATS came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopRelay()
	<-done
	info, err := e.js.Stream(ctx, "SOURCE")
	if err != nil {
		t.Fatal(err)
	}
	if info.CachedInfo().State.Msgs != 1 {
		t.Fatalf("stream has %d messages, want 1", info.CachedInfo().State.Msgs)
	}
}

func TestFailingHandlerIsRetriedThenDeadLettered(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// A short-lived copy of the declared consumer, with quick redelivery.
	_, err := e.js.CreateOrUpdateConsumer(ctx, "SOURCE", jetstream.ConsumerConfig{
		Durable: "test-dl", FilterSubject: "sluice.source.run.requested", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Second, MaxDeliver: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := e.js.OrderedConsumer(ctx, "DEADLETTER", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"sluice.deadletter.build.test-dl"}})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := events.New(runRequested("doomed"), "doomed", "doomed")
	m, _ := ev.Msg()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	cons := events.NewConsumer(e.js, quiet(), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "test-dl"},
		func(context.Context, events.Event, events.Delivery) error {
			attempts.Add(1)
			return errors.New("always fails")
		})
	consCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cons.Run(consCtx) }()
	msg, err := dead.Next(jetstream.FetchMaxWait(30 * time.Second))
	stop()
	<-done
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if attempts.Load() != 3 {
		t.Fatalf("attempts = %d, want 3 (MaxDeliver)", attempts.Load())
	}
	if msg.Headers().Get(events.HeaderDeadLetterSubject) != "sluice.source.run.requested" || msg.Headers().Get("ce-id") != ev.ID {
		t.Fatalf("dead letter headers %v", msg.Headers())
	}
}

// A failed delivery comes again after the consumer's back-off for it (a
// plain Nak would be redelivered at once, spending every delivery within
// milliseconds of a passing outage).
func TestFailedDeliveryIsRetriedAfterTheConsumersBackOff(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	backOff := []time.Duration{time.Second, 2 * time.Second}
	_, err := e.js.CreateOrUpdateConsumer(ctx, "SOURCE", jetstream.ConsumerConfig{
		Durable: "test-backoff", FilterSubject: "sluice.source.run.requested", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 4, BackOff: backOff,
	})
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := events.New(runRequested("flaky"), "flaky", "flaky")
	m, _ := ev.Msg()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	attempts := make(chan time.Time, 4)
	cons := events.NewConsumer(e.js, quiet(), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "test-backoff"},
		func(_ context.Context, _ events.Event, d events.Delivery) error {
			attempts <- time.Now()
			if d.NumDelivered() < 3 {
				return errors.New("away for a moment")
			}
			return nil
		})
	consCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cons.Run(consCtx) }()
	defer func() { stop(); <-done }()
	var at []time.Time
	for len(at) < 3 {
		select {
		case a := <-attempts:
			at = append(at, a)
		case <-ctx.Done():
			t.Fatalf("%d deliveries, want 3", len(at))
		}
	}
	for i, want := range backOff {
		// The server's redelivery timer is coarse: allow it 10% early.
		if gap := at[i+1].Sub(at[i]); gap < want*9/10 {
			t.Errorf("delivery %d came %s after the one before; want the back-off, %s", i+2, gap, want)
		}
	}
}

func TestPermanentErrorIsDeadLetteredAtOnce(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead, err := e.js.OrderedConsumer(ctx, "DEADLETTER", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Garbage on the work subject: it cannot decode, so it goes to the
	// dead-letter stream on its first delivery.
	if _, err := e.js.Publish(ctx, "sluice.source.run.requested", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	cons := events.NewConsumer(e.js, quiet(), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "build-runs"},
		func(context.Context, events.Event, events.Delivery) error { attempts.Add(1); return nil })
	consCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cons.Run(consCtx) }()
	msg, err := dead.Next(jetstream.FetchMaxWait(20 * time.Second))
	stop()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 0 || msg.Subject() != "sluice.deadletter.build.build-runs" {
		t.Fatalf("attempts %d, subject %s", attempts.Load(), msg.Subject())
	}
}

// A stop lets the event in hand finish within DrainTimeout (it is acked, not
// redelivered), and interrupts one that takes longer (it is redelivered).
func TestStopDrainsEventsInHand(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	publish := func(id string) {
		ev, err := events.New(runRequested(id), id, id)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := ev.Msg()
		if _, err := e.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	run := func(durable string, work time.Duration) (finished bool, redelivered bool) {
		started := make(chan struct{}, 1)
		var done atomic.Bool
		cons := events.NewConsumer(e.js, quiet(), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: durable, DrainTimeout: time.Second},
			func(hctx context.Context, _ events.Event, _ events.Delivery) error {
				started <- struct{}{}
				select {
				case <-time.After(work):
					done.Store(true)
					return nil
				case <-hctx.Done():
					return hctx.Err()
				}
			})
		consCtx, stop := context.WithCancel(ctx)
		finishedRun := make(chan struct{})
		go func() { defer close(finishedRun); _ = cons.Run(consCtx) }()
		<-started
		stop() // shutdown begins while the handler works
		<-finishedRun
		info, err := e.js.Consumer(ctx, "SOURCE", durable)
		if err != nil {
			t.Fatal(err)
		}
		ci, err := info.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return done.Load(), ci.NumAckPending+int(ci.NumPending) > 0 || ci.NumRedelivered > 0
	}
	for _, durable := range []string{"drain-short", "drain-long"} {
		if _, err := e.js.CreateOrUpdateConsumer(ctx, "SOURCE", jetstream.ConsumerConfig{
			Durable: durable, FilterSubject: "sluice.source.run.requested", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		}); err != nil {
			t.Fatal(err)
		}
	}
	publish("drain")
	if finished, pending := run("drain-short", 200*time.Millisecond); !finished || pending {
		t.Fatalf("short handler: finished %v, still pending %v; want it finished and acked", finished, pending)
	}
	if finished, pending := run("drain-long", 10*time.Second); finished || !pending {
		t.Fatalf("long handler: finished %v, still pending %v; want it interrupted and left for redelivery", finished, pending)
	}
}

// What a handler enqueues while the process stops (during the drain) is
// still published: the relay goes on until no handler is in flight.
func TestStoppingRelayPublishesWhatDrainingHandlersEnqueue(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, err := events.New(runRequested("drain-in"), "drain-in", "drain-in")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := in.Msg()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	out, err := events.New(runRequested("drain-out"), "drain-out", "drain-out")
	if err != nil {
		t.Fatal(err)
	}
	relay := events.NewRelay(e.db, e.js, quiet())
	started := make(chan struct{})
	cons := events.NewConsumer(e.js, quiet(), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "build-runs", DrainTimeout: 5 * time.Second},
		relay.Track(func(hctx context.Context, ev events.Event, _ events.Delivery) error {
			if ev.ID != in.ID {
				return nil
			}
			close(started)
			time.Sleep(300 * time.Millisecond) // still working when the stop comes
			err := e.db.InTx(hctx, func(tx *sql.Tx) error { return events.Enqueue(hctx, tx, out) })
			relay.Kick()
			return err
		}))
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = cons.Run(runCtx) })
	wg.Go(func() { relay.Run(runCtx) })
	<-started
	stop() // both stop together, as a process's loops do
	wg.Wait()
	if n, err := events.Pending(ctx, e.db); err != nil || n != 0 {
		t.Fatalf("outbox still holds %d events (%v) after the relay stopped", n, err)
	}
	stream, err := e.js.Stream(ctx, "SOURCE")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, m.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("ce-id") != out.ID {
		t.Fatalf("last %s has ce-id %q (%v); want %s, the event enqueued during the drain", m.Subject, msg.Header.Get("ce-id"), err, out.ID)
	}
}

// A relay waits only for its own service's handlers: in `sluice up`, one
// service's stop does not wait on another service's long handler.
func TestStoppingRelayWaitsOnlyForItsOwnHandlers(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	busy := events.NewRelay(e.db, e.js, quiet())
	idle := events.NewRelay(e.db, e.js, quiet())
	started, release := make(chan struct{}), make(chan struct{})
	handler := busy.Track(func(context.Context, events.Event, events.Delivery) error {
		close(started)
		<-release
		return nil
	})
	go func() { _ = handler(ctx, events.Event{}, nil) }()
	<-started
	defer close(release)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { idle.Run(runCtx); close(done) }()
	stop()
	select {
	case <-done:
	case <-time.After(events.DefaultDrainTimeout):
		t.Fatal("a relay with no handler in flight waited for another relay's handler")
	}
}

// A dead letter's reason is one header line, however many lines the error
// had, and bounded.
func TestDeadLetterReasonIsOneBoundedHeaderLine(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in, err := events.New(runRequested("dl-reason"), "dl-reason", "dl-reason")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := in.Msg()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	reason := "first violation\r\nsecond violation\n\x1b[2J" + strings.Repeat("é", 3000)
	cons := events.NewConsumer(e.js, quiet(), events.ConsumerConfig{Service: "build", Stream: "SOURCE", Durable: "build-runs"},
		func(context.Context, events.Event, events.Delivery) error {
			return fmt.Errorf("%w: %s", events.ErrPermanent, reason)
		})
	sub, err := e.js.Conn().SubscribeSync(events.DeadLetterSubject("build", "build-runs"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = cons.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	dl, err := sub.NextMsg(15 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := dl.Header.Get(events.HeaderDeadLetterReason)
	if strings.ContainsAny(got, "\r\n\x1b") || len(got) > 2100 || !strings.Contains(got, "first violation; second violation") || !utf8.ValidString(got) {
		t.Fatalf("reason header %q (%d bytes)", got[:min(len(got), 200)], len(got))
	}
}
