package tests_test

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

// syncBuffer collects the service's log; it is printed when a test fails.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	buf := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("service log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// world is what every component test needs: a real nats-server with the
// BUILD stream, the artifact store and test's streams and consumer, and a
// git repository. The test service asks no other service for anything: the
// BuildFinished events the tests publish carry every run's pipeline.
type world struct {
	t         *testing.T
	nats      *natstest.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	pipelines map[string]*sourcev1.Pipeline // by run id
	repo      repo
	events    *collector
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Build's own consumers read the SOURCE stream, which no one provides
	// here: provision build's streams and object store without them.
	if err := natsprovision.Apply(ctx, js, withoutConsumers(t, deploy.NATS()), "build", natsprovision.Options{}); err != nil {
		t.Fatalf("provision build: %v", err)
	}
	if err := natsprovision.Apply(ctx, js, deploy.NATS(), "test", natsprovision.Options{}); err != nil {
		t.Fatalf("provision test: %v", err)
	}
	w := &world{t: t, nats: srv, nc: nc, js: js, pipelines: map[string]*sourcev1.Pipeline{}}
	w.repo = newRepo(t)
	w.events = collect(t, nc, "sluice.test.>")
	return w
}

// withoutConsumers is fsys without any consumer declarations.
func withoutConsumers(t *testing.T, fsys fs.FS) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(p, "consumers/") {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		out[p] = &fstest.MapFile{Data: data}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
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

// helloArtifact is the build's artifact: a program the tests run.
var helloArtifact = []byte("#!/bin/sh\necho hello from the artifact\n")

// putArtifact stores content as the run's artifact name, as build does, and
// returns its description for BuildFinished.
func (w *world) putArtifact(runID, name string, content []byte) *buildv1.Artifact {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := artifacts.Open(ctx, w.js)
	if err != nil {
		w.t.Fatal(err)
	}
	a, err := store.Put(ctx, artifacts.Artifact{Name: name, Object: artifacts.ObjectName(runID, name)}, "", bytes.NewReader(content))
	if err != nil {
		w.t.Fatal(err)
	}
	return &buildv1.Artifact{Name: a.Name, Object: a.Object, Sha256: a.SHA256, Size: a.Size}
}

// run registers a run with pipeline at source and returns its id.
func (w *world) run(pipeline *sourcev1.Pipeline) string {
	id := uuid.Must(uuid.NewV7()).String()
	w.pipelines[id] = pipeline
	return id
}

// repoDown makes the repository unreachable (a transient infrastructure
// failure: checkouts fail and are retried) or reachable again.
func (w *world) repoDown(down bool) {
	w.t.Helper()
	from, to := w.repo.url, w.repo.url+".away"
	if !down {
		from, to = to, from
	}
	if err := os.Rename(from, to); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) buildFinished(runID string, status buildv1.BuildStatus, artifacts ...*buildv1.Artifact) *buildeventsv1.BuildFinished {
	return &buildeventsv1.BuildFinished{
		RunId:      runID,
		BuildId:    "build-" + runID,
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: "hello", Url: w.repo.url},
		Commit:     w.repo.commit,
		Branch:     "main",
		Status:     status,
		Artifacts:  artifacts,
		Pipeline:   w.pipelines[runID],
	}
}

// publish publishes a BuildFinished event as build would and returns its
// stream sequence.
func (w *world) publish(bf *buildeventsv1.BuildFinished) uint64 {
	w.t.Helper()
	ev, err := events.New(bf, bf.GetBuildId(), bf.GetRunId())
	if err != nil {
		w.t.Fatal(err)
	}
	msg, err := ev.Msg()
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := w.js.PublishMsg(ctx, msg)
	if err != nil {
		w.t.Fatal(err)
	}
	return ack.Sequence
}

// waitHandled waits until test's consumer has acknowledged every message
// up to stream sequence seq.
func (w *world) waitHandled(seq uint64) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		c, err := w.js.Consumer(ctx, "BUILD", "test-builds")
		if err == nil {
			info, err := c.Info(ctx)
			if err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			w.t.Fatalf("test-builds did not acknowledge message %d", seq)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// collector keeps every event published on a subject.
type collector struct {
	t      *testing.T
	mu     sync.Mutex
	events []events.Event
	added  chan struct{}
}

func collect(t *testing.T, nc *nats.Conn, subject string) *collector {
	t.Helper()
	c := &collector{t: t, added: make(chan struct{}, 1)}
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
func (c *collector) finished(runID string) *testeventsv1.TestRunFinished {
	c.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		for _, ev := range c.of(runID) {
			if f, ok := ev.Payload.(*testeventsv1.TestRunFinished); ok {
				return f
			}
		}
		select {
		case <-c.added:
		case <-deadline:
			c.t.Fatalf("no TestRunFinished for run %s; events: %v", runID, c.of(runID))
		}
	}
}
