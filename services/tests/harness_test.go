package tests_test

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/executor/executortest"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	"github.com/sluicehq/sluice/platform/steplog"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
	"github.com/sluicehq/sluice/services/tests"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

// wait bounds what the tests wait for that should happen soon.
const wait = 20 * time.Second

// harness is the test service under test and what is around it: its own
// nats-server with the BUILD stream and the artifact store (build's) and
// test's streams and consumer, a git repository, a collector of the events
// the service publishes, and the service composed as sluice-test composes
// it. The test service asks no other service for anything: the
// BuildFinished events the tests publish carry every run's pipeline.
type harness struct {
	t      *testing.T
	nats   *natstest.Server
	js     jetstream.JetStream
	repo   repo
	events *collector
	client testv1connect.TestServiceClient
	proc   *servicekittest.Process
	// tune changes the configuration (config) after its defaults.
	tune []func(*tests.Config)

	mu   sync.Mutex
	runs map[string]run // by run id
}

// run is what a run's BuildFinished carries besides the outcome.
type run struct {
	pipeline *sourcev1.Pipeline
	repo     repo
}

func newHarness(t *testing.T, tune ...func(*tests.Config)) *harness {
	t.Helper()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	servicekittest.Producers(t, js, "source", "build")
	h := &harness{t: t, nats: srv, js: js, runs: map[string]run{}, tune: tune}
	h.repo = newRepo(t)
	h.events = collect(t, nc, "sluice.test.>")
	p := servicekittest.Start(t, srv.URL, servicekittest.Options{}, tests.Module(h.config()))
	h.client = testv1connect.NewTestServiceClient(p.Client, p.URL)
	h.proc = p
	return h
}

// clientWith is a client of the service that sends secret as its
// credential (servicekittest.IssueToken makes one).
func (h *harness) clientWith(secret string) testv1connect.TestServiceClient {
	return testv1connect.NewTestServiceClient(h.proc.ClientWith(secret), h.proc.URL)
}

// config is a configuration with a data directory and a database of its
// own; the repositories are local (allow-egress local).
func (h *harness) config() tests.Config {
	cfg := tests.Config{
		Settings: servicekit.Settings{DataDir: h.t.TempDir(), DatabaseURL: sqldbtest.URL(h.t), AllowEgress: []string{egress.Local}},
		// The steps build and test Go with the tests' toolchain and cache.
		Isolation: executortest.GoIsolation(h.t),
		Workers:   2,
	}
	for _, f := range h.tune {
		f(&cfg)
	}
	return cfg
}

// plainService is a test service made with its plain constructors, beside
// the composed one and with a database of its own, for tests that hand it
// deliveries themselves; its outbox relay runs.
func (h *harness) plainService() (*tests.Service, *tests.Store) {
	h.t.Helper()
	cfg := h.config().WithDefaults()
	db := servicekittest.OpenDBAt(h.t, cfg.DatabaseURL, tests.Migrations(), steplog.Migrations(), runcancel.Migrations())
	store := tests.NewStore(db)
	log := servicekittest.Logger(h.t)
	relay := events.NewRelay(db, h.js, log)
	policy, err := cfg.Egress(tests.Name)
	if err != nil {
		h.t.Fatal(err)
	}
	svc, err := tests.NewService(cfg, tests.Deps{
		Store: store, DB: db, Outbox: relay, JetStream: h.js,
		Executor: &executor.Steps{Local: &executor.Local{DefaultTimeout: cfg.DefaultStepTimeout}}, Log: log, Egress: policy,
		Cancels: runcancel.New(db, 0, log),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		relay.Run(ctx)
	}()
	h.t.Cleanup(func() { cancel(); <-done })
	return svc, store
}

// repo is a git repository with a tiny Go module and its tests.
type repo struct {
	url    string
	commit string
}

const helloTest = `package hello

import (
	"os"
	"testing"
)

func TestGreeting(t *testing.T) {
	if Greeting() != "hello" {
		t.Fatalf("Greeting() = %q", Greeting())
	}
}

func TestWorld(t *testing.T) {
	if os.Getenv("HELLO_BREAK") != "" {
		t.Errorf("broken on purpose: HELLO_BREAK=%s", os.Getenv("HELLO_BREAK"))
	}
}

func TestLater(t *testing.T) { t.Skip("not yet") }

func TestTable(t *testing.T) {
	t.Run("a", func(t *testing.T) {})
	t.Run("b", func(t *testing.T) {
		if os.Getenv("HELLO_BREAK") != "" {
			t.Error("b broke")
		}
	})
}
`

func newRepo(t *testing.T) repo {
	t.Helper()
	r := gittest.New(t)
	sha := r.CommitFiles("hello", map[string]string{
		"go.mod":        "module example.com/hello\n\ngo 1.26\n",
		"hello.go":      "package hello\n\n// Greeting greets.\nfunc Greeting() string { return \"hello\" }\n",
		"hello_test.go": helloTest,
	})
	return repo{url: r.Dir, commit: sha}
}

// down makes the repository unreachable (a transient infrastructure
// failure: checkouts fail and are retried) or reachable again.
func (r repo) down(t *testing.T, down bool) {
	t.Helper()
	from, to := r.url, r.url+".away"
	if !down {
		from, to = to, from
	}
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// helloArtifact is the build's artifact: a program the tests run.
var helloArtifact = []byte("#!/bin/sh\necho hello from the artifact\n")

// putArtifact stores content as the run's artifact name, as build does, and
// returns its description for BuildFinished.
func (h *harness) putArtifact(runID, name string, content []byte) *buildv1.Artifact {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	store, err := artifacts.Open(ctx, h.js)
	if err != nil {
		h.t.Fatal(err)
	}
	a, err := store.Put(ctx, artifacts.Artifact{Name: name, Object: artifacts.ObjectName(runID, name)}, "", bytes.NewReader(content), 1<<30)
	if err != nil {
		h.t.Fatal(err)
	}
	return &buildv1.Artifact{Name: a.Name, Object: a.Object, Sha256: a.SHA256, Size: a.Size}
}

// run makes a run of the harness's repository with pipeline and returns
// its id.
func (h *harness) run(pipeline *sourcev1.Pipeline) string {
	return h.runOf(h.repo, pipeline)
}

// runOf makes a run of r with pipeline and returns its id.
func (h *harness) runOf(r repo, pipeline *sourcev1.Pipeline) string {
	id := uuid.Must(uuid.NewV7()).String()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs[id] = run{pipeline: pipeline, repo: r}
	return id
}

// buildFinished is the run's BuildFinished as build would publish it.
func (h *harness) buildFinished(runID string, status buildv1.BuildStatus, artifacts ...*buildv1.Artifact) *buildeventsv1.BuildFinished {
	h.mu.Lock()
	r, ok := h.runs[runID]
	h.mu.Unlock()
	if !ok {
		r.repo = h.repo
	}
	return &buildeventsv1.BuildFinished{
		RunId:      runID,
		BuildId:    "build-" + runID,
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: "hello", Url: r.repo.url},
		Commit:     r.repo.commit,
		Branch:     "main",
		Status:     status,
		Artifacts:  artifacts,
		Pipeline:   r.pipeline,
	}
}

// event is the run's successful BuildFinished as an event.
func (h *harness) event(t *testing.T, runID string) events.Event {
	t.Helper()
	bf := h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED)
	ev, err := events.New(bf, bf.GetBuildId(), runID)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// publish publishes a BuildFinished event as build would and returns its
// stream sequence.
func (h *harness) publish(bf *buildeventsv1.BuildFinished) uint64 {
	h.t.Helper()
	ev, err := events.New(bf, bf.GetBuildId(), bf.GetRunId())
	if err != nil {
		h.t.Fatal(err)
	}
	return h.publishEvent(h.t, ev)
}

// publishUnchecked publishes bf as the payload of a BuildFinished without
// the checks events.New makes, as a producer with other rules (or a bug)
// could. The event's chain id is a fresh run id, returned to find it by.
func (h *harness) publishUnchecked(t *testing.T, bf *buildeventsv1.BuildFinished) string {
	t.Helper()
	valid := h.buildFinished(h.run(nil), buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED)
	ev, err := events.New(valid, valid.GetBuildId(), valid.GetRunId())
	if err != nil {
		t.Fatal(err)
	}
	ev.Payload = proto.Clone(bf)
	h.publishEvent(t, ev)
	return ev.ChainID
}

func (h *harness) publishEvent(t *testing.T, ev events.Event) uint64 {
	t.Helper()
	msg, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ack, err := h.js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// deadLetter waits for the consumer to dead-letter the message of the run
// chainID and returns the reason it gives.
func (h *harness) deadLetter(t *testing.T, chainID string) string {
	t.Helper()
	return servicekittest.DeadLetter(t, h.js, tests.Name, "test-builds", chainID)
}

// waitHandled waits until test's consumer has acknowledged every message
// up to stream sequence seq.
func (h *harness) waitHandled(seq uint64) {
	h.t.Helper()
	ctx := h.t.Context()
	servicekittest.Eventually(h.t, "test-builds to acknowledge the BUILD stream", func() bool {
		c, err := h.js.Consumer(ctx, "BUILD", "test-builds")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
	})
}

// testStreamMsgs is how many events the TEST stream holds.
func (h *harness) testStreamMsgs() uint64 {
	h.t.Helper()
	stream, err := h.js.Stream(h.t.Context(), "TEST")
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := stream.Info(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

// collector keeps every event published on a subject.
type collector struct {
	mu     sync.Mutex
	events []events.Event
	added  chan struct{}
}

func collect(t *testing.T, nc *nats.Conn, subject string) *collector {
	t.Helper()
	c := &collector{added: make(chan struct{}, 1)}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		ev, err := events.Decode(m.Subject, m.Header, m.Data)
		if err != nil {
			t.Errorf("undecodable event on %s: %v", m.Subject, err)
			return
		}
		c.mu.Lock()
		c.events = append(c.events, ev)
		c.mu.Unlock()
		select {
		case c.added <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return c
}

// of returns the events of the run so far.
func (c *collector) of(runID string) []events.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []events.Event
	for _, ev := range c.events {
		if ev.ChainID == runID {
			out = append(out, ev)
		}
	}
	return out
}

// finished waits for the run's TestRunFinished.
func (c *collector) finished(t *testing.T, runID string) *testeventsv1.TestRunFinished {
	t.Helper()
	deadline := time.After(wait)
	for {
		for _, ev := range c.of(runID) {
			if f, ok := ev.Payload.(*testeventsv1.TestRunFinished); ok {
				return f
			}
		}
		select {
		case <-c.added:
		case <-time.After(100 * time.Millisecond):
			// Several tests may wait on one collector; the signal wakes one.
		case <-deadline:
			t.Fatalf("no TestRunFinished for run %s; events: %v", runID, c.of(runID))
		}
	}
}
