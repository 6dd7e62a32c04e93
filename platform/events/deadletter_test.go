package events_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
)

// An outbox row NATS refuses for good (over the server's max_payload; over
// a stream's max_msg_size) goes to the dead-letter stream with its reason
// and leaves the outbox; the rows after it are published in order.
func TestRelayDeadLettersWhatNATSRefusesAndGoesOn(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, store string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conf := filepath.Join(t.TempDir(), "nats.conf")
		if err := os.WriteFile(conf, []byte("max_payload: 262144\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		srv := natstest.Start(t, natstest.WithConfig(conf))
		js, err := jetstream.New(srv.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := natsprovision.ApplyAll(ctx, js, deploy.NATS(), natsprovision.Options{}); err != nil {
			t.Fatal(err)
		}
		build, err := js.Stream(ctx, "BUILD")
		if err != nil {
			t.Fatal(err)
		}
		limited := build.CachedInfo().Config
		limited.MaxMsgSize = 16 << 10
		if _, err := js.UpdateStream(ctx, limited); err != nil {
			t.Fatal(err)
		}
		db, err := sqldb.Open(ctx, sqldbtest.URLFor(t, store), events.Migrations())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = db.Close() }()

		newEvent := func(p *sourceeventsv1.RunRequested) events.Event {
			ev, err := events.New(p, p.GetRunId(), p.GetRunId())
			if err != nil {
				t.Fatal(err)
			}
			return ev
		}
		first := newEvent(runRequested("first"))
		big := runRequested("big") // within the event budget, over this server's max_payload
		big.CommitMessage = strings.Repeat("m", 300<<10)
		tooBig := newEvent(big)
		failed, err := events.New(&buildeventsv1.BuildFinished{
			RunId: "b", BuildId: "b1", Commit: "0123456789abcdef0123456789abcdef01234567",
			Repository:    &sourceeventsv1.RepositoryRef{Id: "r1", Name: "hello", Url: "/tmp/hello"},
			Status:        buildv1.BuildStatus_BUILD_STATUS_FAILED,
			FailureReason: strings.Repeat("r", 32<<10), // over BUILD's max_msg_size here
		}, "b1", "b")
		if err != nil {
			t.Fatal(err)
		}
		last := newEvent(runRequested("last"))
		enqueue(t, db, first, tooBig, failed, last)

		reg := prometheus.NewRegistry()
		metrics, err := events.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		relay := events.NewRelay(db, js, quiet(), events.CountWith(metrics))
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); relay.Run(runCtx) }()
		defer func() { stop(); <-done }()
		for deadline := time.Now().Add(20 * time.Second); ; {
			n, err := events.Pending(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the outbox still holds %d events after 20s: a refused row holds up the rest", n)
			}
			time.Sleep(50 * time.Millisecond)
		}

		source, err := js.Stream(ctx, "SOURCE")
		if err != nil {
			t.Fatal(err)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP sluice_events_deadlettered_total Messages dead-lettered to the DEADLETTER stream, by consumer (or outbox) and cause (panic, invalid, permanent, exhausted, interrupted, refused).
# TYPE sluice_events_deadlettered_total counter
sluice_events_deadlettered_total{cause="refused",consumer="outbox"} 2
`), "sluice_events_deadlettered_total"); err != nil {
			t.Error(err)
		}
		for seq, want := range map[uint64]string{1: first.ID, 2: last.ID} {
			m, err := source.GetMsg(ctx, seq)
			if err != nil || m.Header.Get(events.HeaderID) != want {
				t.Errorf("SOURCE message %d: %v (%v); want event %s", seq, m, err, want)
			}
		}
		if n := source.CachedInfo().State.Msgs; n > 2 {
			t.Errorf("SOURCE holds %d messages; want 2", n)
		}

		dead, err := js.Stream(ctx, "DEADLETTER")
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			ev                     events.Event
			subject, stream, cause string
		}{
			{tooBig, "sluice.deadletter.source.outbox", "SOURCE", "maximum payload exceeded"},
			{failed, "sluice.deadletter.build.outbox", "BUILD", "message size exceeds maximum allowed"},
		} {
			m, err := dead.GetLastMsgForSubject(ctx, tc.subject)
			if err != nil {
				t.Errorf("no dead letter on %s: %v", tc.subject, err)
				continue
			}
			h := m.Header
			if h.Get(events.HeaderID) != tc.ev.ID || h.Get(events.HeaderDeadLetterSubject) != tc.ev.Kind.Subject ||
				h.Get(events.HeaderDeadLetterStream) != tc.stream || !strings.Contains(h.Get(events.HeaderDeadLetterReason), tc.cause) {
				t.Errorf("dead letter on %s: headers %v; want event %s, its subject and stream, and a reason saying %q", tc.subject, h, tc.ev.ID, tc.cause)
			}
			msg, _ := tc.ev.Msg()
			if len(m.Data) == 0 || !bytes.HasPrefix(msg.Data, m.Data) {
				t.Errorf("dead letter on %s: the body is not the event's (or its start)", tc.subject)
			}
		}
	})
}
