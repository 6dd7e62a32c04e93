package notify_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	notifyv1 "github.com/sluicehq/sluice/proto/gen/sluice/notify/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/notify/v1/notifyv1connect"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/notify"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

const testVersion = "1.2.3-test"

// harness is notify under test: a NATS server of its own with the
// producers' streams, and notify composed as its binary composes it
// (servicekittest.Start), with Connect clients over a loopback server.
type harness struct {
	t    *testing.T
	nats *natstest.Server
	js   jetstream.JetStream
	cfg  notify.Config
	proc *servicekittest.Process
	url  string
	// client speaks Connect; grpc speaks the gRPC protocol (HTTP/2
	// without TLS).
	client notifyv1connect.NotifyServiceClient
	grpc   notifyv1connect.NotifyServiceClient
	// logs keeps what the service logged, as the test's output shows it.
	logs servicekittest.Logs
}

// newHarness starts notify with the test configuration, which tune may
// change first.
func newHarness(t *testing.T, tune ...func(*notify.Config)) *harness {
	t.Helper()
	h := &harness{t: t, nats: natstest.Start(t)}
	js, err := jetstream.New(h.nats.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	h.js = js
	// The streams of the services notify listens to (their consumers are
	// not needed: those services do not run here).
	servicekittest.Producers(t, js, "source", "build", "test", "release")
	h.cfg = notify.Config{
		// The subscribers are on loopback.
		Settings:       servicekit.Settings{DataDir: t.TempDir(), DatabaseURL: sqldbtest.URL(t), AllowEgress: []string{egress.Loopback}},
		RetryBase:      50 * time.Millisecond,
		RetryMax:       time.Second,
		AttemptTimeout: 5 * time.Second,
	}
	for _, f := range tune {
		f(&h.cfg)
	}
	h.start()
	return h
}

// start starts a notify process with h.cfg (on the same database as the
// one before, if any).
func (h *harness) start() {
	h.t.Helper()
	log := slog.New(servicekittest.StrictAudit(h.t, slog.NewTextHandler(io.MultiWriter(h.t.Output(), &h.logs), &slog.HandlerOptions{Level: slog.LevelInfo})))
	h.proc = servicekittest.Start(h.t, h.nats.URL, servicekittest.Options{Log: log, Version: testVersion}, notify.Module(h.cfg))
	h.url = h.proc.URL
	h.client = notifyv1connect.NewNotifyServiceClient(h.proc.Client, h.url)
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	h.t.Cleanup(h2c.CloseIdleConnections)
	admin := h.proc.AdminToken
	h.grpc = notifyv1connect.NewNotifyServiceClient(&http.Client{Transport: auth.WithSecret(h2c, func() string { return admin })}, h.url, connect.WithGRPC())
}

// stop stops the notify process (drains it).
func (h *harness) stop() { h.proc.Stop() }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func (h *harness) subscribe(req *notifyv1.CreateSubscriptionRequest) *notifyv1.Subscription {
	h.t.Helper()
	res, err := h.client.CreateSubscription(ctx(h.t), req)
	if err != nil {
		h.t.Fatalf("CreateSubscription: %v", err)
	}
	return res.GetSubscription()
}

func (h *harness) deliveries(subscriptionID string) []*notifyv1.Delivery {
	h.t.Helper()
	res, err := h.client.ListDeliveries(ctx(h.t), &notifyv1.ListDeliveriesRequest{SubscriptionId: subscriptionID})
	if err != nil {
		h.t.Fatalf("ListDeliveries: %v", err)
	}
	return res.GetDeliveries()
}

// waitDelivery waits until the subscription has exactly one delivery, in
// status want, and returns it.
func (h *harness) waitDelivery(subscriptionID string, want notifyv1.DeliveryStatus) *notifyv1.Delivery {
	h.t.Helper()
	var d *notifyv1.Delivery
	eventually(h.t, "delivery "+want.String(), func() (bool, string) {
		list := h.deliveries(subscriptionID)
		if len(list) != 1 {
			return false, fmt.Sprintf("%d deliveries", len(list))
		}
		d = list[0]
		return d.GetStatus() == want, fmt.Sprintf("status %v after %d attempts", d.GetStatus(), len(d.GetAttempts()))
	})
	return d
}

// published is an event as it went on NATS.
type published struct {
	ev  events.Event
	msg *nats.Msg
	seq uint64
}

// publish publishes payload as an event made by events.New, like its
// producer would, in the chain run-1.
func (h *harness) publish(payload proto.Message, subjectID string) published {
	h.t.Helper()
	return h.publishInRun(payload, subjectID, "run-1")
}

// publishInRun publishes payload as an event of the run runID.
func (h *harness) publishInRun(payload proto.Message, subjectID, runID string) published {
	h.t.Helper()
	ev, err := events.New(payload, subjectID, runID)
	if err != nil {
		h.t.Fatal(err)
	}
	msg, err := ev.Msg()
	if err != nil {
		h.t.Fatal(err)
	}
	return h.publishMsg(ev, msg)
}

func (h *harness) publishMsg(ev events.Event, msg *nats.Msg) published {
	h.t.Helper()
	ack, err := h.js.PublishMsg(ctx(h.t), msg)
	if err != nil {
		h.t.Fatalf("publish %s: %v", msg.Subject, err)
	}
	if ack.Duplicate {
		h.t.Fatalf("publish %s: JetStream dropped it as a duplicate", msg.Subject)
	}
	return published{ev: ev, msg: msg, seq: ack.Sequence}
}

// waitHandled waits until notify's consumer of p's stream acknowledged p
// (and everything before it): its fan-out is committed.
func (h *harness) waitHandled(p published) {
	h.t.Helper()
	stream := p.ev.Kind.Stream()
	durable := "notify-" + p.ev.Kind.Service
	eventually(h.t, durable+" acknowledged "+p.ev.Kind.Type, func() (bool, string) {
		cons, err := h.js.Consumer(ctx(h.t), stream, durable)
		if err != nil {
			return false, err.Error()
		}
		info, err := cons.Info(ctx(h.t))
		if err != nil {
			return false, err.Error()
		}
		return info.AckFloor.Stream >= p.seq, fmt.Sprintf("ack floor %d, want %d", info.AckFloor.Stream, p.seq)
	})
}

// notifyEvent waits for the last event published on subject by notify.
func (h *harness) notifyEvent(subject string) events.Event {
	h.t.Helper()
	var ev events.Event
	eventually(h.t, "an event on "+subject, func() (bool, string) {
		stream, err := h.js.Stream(ctx(h.t), "NOTIFY")
		if err != nil {
			return false, err.Error()
		}
		m, err := stream.GetLastMsgForSubject(ctx(h.t), subject)
		if err != nil {
			return false, err.Error()
		}
		ev, err = events.Decode(m.Subject, m.Header, m.Data)
		if err != nil {
			h.t.Fatalf("decode %s: %v", subject, err)
		}
		return true, ""
	})
	return ev
}

// eventually polls cond until it holds, failing the test after 15s with
// cond's last explanation.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// request is what a subscriber received.
type request struct {
	header http.Header
	body   []byte
	code   int
}

// subscriber is a webhook endpoint on loopback that answers with the
// status its script gives for the n-th request (1-based).
type subscriber struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []request
	status func(n int) int
}

func newSubscriber(t *testing.T, status func(n int) int) *subscriber {
	t.Helper()
	s := &subscriber{status: status}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		code := s.status(len(s.got) + 1)
		s.got = append(s.got, request{header: r.Header.Clone(), body: body, code: code})
		s.mu.Unlock()
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, "answer %d", code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *subscriber) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.got...)
}

// accepted counts the requests answered with a 2xx.
func (s *subscriber) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.got {
		if r.code >= 200 && r.code < 300 {
			n++
		}
	}
	return n
}

func always(code int) func(int) int { return func(int) int { return code } }

// hmacHex is the expected signature header, computed here independently
// of the service's code.
func hmacHex(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func repo(name string) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: "repo-" + name, Name: name, Url: "https://git.example.com/" + name + ".git"}
}

// buildFinished is a build of repository "hello".
func buildFinished() *buildeventsv1.BuildFinished {
	return &buildeventsv1.BuildFinished{RunId: "run-1", BuildId: "build-1", Repository: repo("hello"), Commit: "0123456789abcdef0123456789abcdef01234567"}
}
