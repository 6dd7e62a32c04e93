package source_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/source"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

// validPipeline is a .sluice.yaml every stage can run.
const validPipeline = `version: 1
build:
  steps:
    - name: compile
      run: go build ./...
test:
  steps:
    - name: unit
      run: go test ./...
release:
  branches: [main]
`

// --- git repositories made in the test ---

// newGitRepo makes a working copy in a directory called name whose HEAD is
// branch, with a first commit holding .sluice.yaml = pipelineFile.
func newGitRepo(t testing.TB, name, branch, pipelineFile string) (*gittest.Repo, string) {
	t.Helper()
	g := gittest.Init(t, filepath.Join(t.TempDir(), name), branch)
	g.Write("README", "hello\n")
	if pipelineFile != "" {
		g.Write(".sluice.yaml", pipelineFile)
	}
	return g, g.Commit("first commit\n\nwith a body\n")
}

// --- the service under test ---

type harness struct {
	t      testing.TB
	proc   *servicekittest.Process
	url    string
	client sourcev1connect.SourceServiceClient
	http   *http.Client
	js     jetstream.JetStream
	// natsURL is the nats-server's.
	natsURL string
	// svc is the service, for what no API offers (PollOnce).
	svc *source.Service
	// logs holds what the service logged at warn and above.
	logs *servicekittest.Logs
}

// newHarness composes the source service with fx as a binary does
// (servicekittest.Start), on a real nats-server and a loopback HTTP server,
// provisions the build, test and release streams (as their services would)
// and waits until it is ready. pollInterval 0 disables polling. The
// repositories are local (allow-egress local) unless tune says otherwise.
func newHarness(t testing.TB, pollInterval time.Duration, tune ...func(*source.Config)) *harness {
	t.Helper()
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logs := &servicekittest.Logs{}
	logger := slog.New(servicekittest.StrictAudit(t, slog.NewMultiHandler(
		slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}),
		slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	cfg := source.Config{
		Settings:     servicekit.Settings{DataDir: t.TempDir(), DatabaseURL: sqldbtest.URL(t), AllowEgress: []string{egress.Local}},
		PollInterval: pollInterval,
	}
	for _, f := range tune {
		f(&cfg)
	}
	var svc *source.Service
	p := servicekittest.Start(t, ns.URL, servicekittest.Options{Log: logger, NoWait: true}, source.ModuleWithService(cfg, &svc))

	servicekittest.Producers(t, js, "build", "test", "release")
	h := &harness{t: t, proc: p, url: p.URL, http: p.Client, js: js, natsURL: ns.URL, svc: svc, logs: logs}
	h.client = sourcev1connect.NewSourceServiceClient(h.http, h.url)
	p.WaitReady(t)
	return h
}

// register registers the repository at url under its default name.
func (h *harness) register(url string) *sourcev1.Repository {
	h.t.Helper()
	res, err := h.client.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{Url: url})
	if err != nil {
		h.t.Fatalf("CreateRepository(%s): %v", url, err)
	}
	return res.Repository
}

func (h *harness) trigger(repo, ref string) *sourcev1.Run {
	h.t.Helper()
	res, err := h.client.TriggerRun(context.Background(), &sourcev1.TriggerRunRequest{Repository: repo, Ref: ref})
	if err != nil {
		h.t.Fatalf("TriggerRun(%s, %q): %v", repo, ref, err)
	}
	return res.Run
}

func (h *harness) getRun(id string) *sourcev1.Run {
	h.t.Helper()
	res, err := h.client.GetRun(context.Background(), &sourcev1.GetRunRequest{RunId: id})
	if err != nil {
		h.t.Fatalf("GetRun(%s): %v", id, err)
	}
	return res.Run
}

func (h *harness) listRuns(repo string) []*sourcev1.Run {
	h.t.Helper()
	res, err := h.client.ListRuns(context.Background(), &sourcev1.ListRunsRequest{Repository: repo})
	if err != nil {
		h.t.Fatalf("ListRuns(%s): %v", repo, err)
	}
	return res.Runs
}

// sourceEvents reads every event on the SOURCE stream with subject.
func (h *harness) sourceEvents(subject string) []events.Event {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := h.js.Stream(ctx, "SOURCE")
	if err != nil {
		h.t.Fatalf("SOURCE stream: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := h.js.OrderedConsumer(ctx, "SOURCE", jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []events.Event
	for {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			h.t.Fatal(err)
		}
		n := 0
		var last *jetstream.MsgMetadata
		for m := range batch.Messages() {
			n++
			ev, err := events.Decode(m.Subject(), m.Headers(), m.Data())
			if err != nil {
				h.t.Fatalf("decode %s: %v", m.Subject(), err)
			}
			out = append(out, ev)
			last, _ = m.Metadata()
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			h.t.Fatal(err)
		}
		if n == 0 || (last != nil && last.NumPending == 0) {
			return out
		}
	}
}

// runEvents are the events of one run with subject.
func (h *harness) runEvents(subject, runID string) []events.Event {
	h.t.Helper()
	var out []events.Event
	for _, ev := range h.sourceEvents(subject) {
		if ev.ChainID == runID {
			out = append(out, ev)
		}
	}
	return out
}

const (
	subjectRunRequested = "sluice.source.run.requested"
	subjectRunStarted   = "sluice.source.run.started"
	subjectRunFinished  = "sluice.source.run.finished"
	subjectChange       = "sluice.source.change.received"
	subjectRepoCreated  = "sluice.source.repository.created"
)

// waitRunEvent waits for an event of run with subject and returns it.
func (h *harness) waitRunEvent(subject, runID string) events.Event {
	h.t.Helper()
	var got []events.Event
	servicekittest.Eventually(h.t, subject+" of run "+runID+" is published", func() bool {
		got = h.runEvents(subject, runID)
		return len(got) > 0
	})
	return got[0]
}

// outboxBarrier triggers a run of repo and waits for its RunRequested:
// the outbox publishes in order, so every event enqueued before has been
// published by then.
func (h *harness) outboxBarrier(repo string) {
	h.t.Helper()
	run := h.trigger(repo, "")
	h.waitRunEvent(subjectRunRequested, run.Id)
}

// publish publishes an event of another service for run.
func (h *harness) publish(payload proto.Message, subjectID, runID string, at time.Time) events.Event {
	h.t.Helper()
	ev, err := events.New(payload, subjectID, runID)
	if err != nil {
		h.t.Fatal(err)
	}
	if !at.IsZero() {
		ev.Time = at
	}
	h.publishEvent(ev, false)
	return ev
}

// publishEvent publishes ev; redeliver publishes it again under a new
// Nats-Msg-Id, so that JetStream keeps it and the consumer sees the same
// event id twice.
func (h *harness) publishEvent(ev events.Event, redeliver bool) {
	h.t.Helper()
	m, err := ev.Msg()
	if err != nil {
		h.t.Fatal(err)
	}
	if redeliver {
		m.Header.Set(nats.MsgIdHdr, ev.ID+"-again")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		h.t.Fatal(err)
	}
}

// waitConsumed waits until the source consumers have acknowledged
// everything published to them.
func (h *harness) waitConsumed() {
	h.t.Helper()
	servicekittest.Eventually(h.t, "the source consumers are idle", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, c := range []struct{ stream, durable string }{{"BUILD", "source-build"}, {"TEST", "source-test"}, {"RELEASE", "source-release"}} {
			cons, err := h.js.Consumer(ctx, c.stream, c.durable)
			if err != nil {
				return false
			}
			info, err := cons.Info(ctx)
			if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
				return false
			}
		}
		return true
	})
}

func repoRef(run *sourcev1.Run, url string) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: run.RepositoryId, Name: run.Repository, Url: url}
}

// sign is GitHub's X-Hub-Signature-256 of body.
func sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// payload is ev's payload as a T.
func payload[T proto.Message](t testing.TB, ev events.Event) T {
	t.Helper()
	p, ok := ev.Payload.(T)
	if !ok {
		t.Fatalf("event %s carries %T", ev.Kind.Type, ev.Payload)
	}
	return p
}

func connectCode(err error) connect.Code {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce.Code()
	}
	return connect.CodeUnknown
}

func mustContain(t testing.TB, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("%q does not contain %q", s, p)
		}
	}
}
