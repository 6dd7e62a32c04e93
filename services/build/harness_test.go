package build_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	"github.com/sluicehq/sluice/platform/steplog"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/build"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

// wait bounds what the tests wait for that should happen soon.
const wait = 15 * time.Second

// harness is the build service under test and what is around it: its own
// nats-server with the SOURCE stream (source's, which the work queue
// reads), a recorder of the events build publishes, and one or more
// replicas of the service composed as sluice-build composes it. The
// harness's methods for one replica act on the first.
type harness struct {
	t    *testing.T
	nats *natstest.Server
	js   jetstream.JetStream
	rec  *recorder
	*instance
	replicas []*instance
	// shared is a directory the replicas' steps may write (step-write-paths).
	shared string
}

// file is a path, unique to t, in the directory the steps may write: a
// file a step leaves for the test to see.
func (h *harness) file(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp(h.shared, "t")
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// instance is one replica of the build service.
type instance struct {
	cfg    build.Config
	nc     *nats.Conn
	client buildv1connect.BuildServiceClient
	proc   *servicekittest.Process
	db     *sqldb.DB // the service's database, opened by the test to watch the outbox
	stop   func()
}

// clientWith is a client of the replica that sends secret as its
// credential (servicekittest.IssueToken makes one).
func (i *instance) clientWith(secret string) buildv1connect.BuildServiceClient {
	return buildv1connect.NewBuildServiceClient(i.proc.ClientWith(secret), i.proc.URL)
}

// newHarness starts the NATS server and a replica for each configuration
// (one with WorkerID worker-1 when none is given). A configuration without
// a data directory or database gets its own.
func newHarness(t *testing.T, replicas ...build.Config) *harness {
	t.Helper()
	h := &harness{t: t, nats: natstest.Start(t), shared: t.TempDir()}
	js, err := jetstream.New(h.nats.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	h.js = js
	servicekittest.Producers(t, js, "source")
	if len(replicas) == 0 {
		replicas = []build.Config{{WorkerID: "worker-1"}}
	}
	for _, cfg := range replicas {
		h.replicas = append(h.replicas, h.start(cfg))
	}
	h.instance = h.replicas[0]
	h.rec = record(t, js)
	return h
}

// start starts a replica of the service.
func (h *harness) start(cfg build.Config) *instance {
	h.t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = h.t.TempDir()
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.URL(h.t)
	}
	if cfg.AllowEgress == nil {
		cfg.AllowEgress = []string{egress.Local} // the repositories are local
	}
	// Steps may write the files tests watch them with (h.file).
	cfg.Isolation.WritePaths = append(cfg.Isolation.WritePaths, h.shared)
	cfg = cfg.WithDefaults()
	p := servicekittest.Start(h.t, h.nats.URL, servicekittest.Options{NATSName: cfg.WorkerID}, build.Module(cfg))
	return &instance{
		cfg:    cfg,
		nc:     p.NATS,
		client: buildv1connect.NewBuildServiceClient(p.Client, p.URL),
		proc:   p,
		db:     servicekittest.OpenDBAt(h.t, cfg.DatabaseURL),
		stop:   p.Stop,
	}
}

// plainService is a build service made with its plain constructors, beside
// the harness's replicas and with a database of its own, for tests that
// hand it deliveries themselves. Its outbox is not relayed: the tests read
// it.
func (h *harness) plainService() (*build.Service, *build.Store, *sqldb.DB) {
	h.t.Helper()
	db := servicekittest.OpenDB(h.t, build.Migrations(), steplog.Migrations(), runcancel.Migrations())
	store := build.NewStore(db)
	cfg := build.Config{Settings: servicekit.Settings{DataDir: h.t.TempDir(), AllowEgress: []string{egress.Local}}, WorkerID: "worker-1"}.WithDefaults()
	log := servicekittest.Logger(h.t)
	policy, err := cfg.Egress(build.Name)
	if err != nil {
		h.t.Fatal(err)
	}
	svc, err := build.NewService(cfg, build.Deps{
		Store: store, DB: db, Outbox: events.NewRelay(db, h.js, log), JetStream: h.js,
		Executor: &executor.Steps{Local: &executor.Local{}}, Log: log, Egress: policy,
		Cancels: runcancel.New(db, 0, log),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return svc, store, db
}

// repo is a git repository made by the test.
type repo struct {
	// dir is the working copy; it is also the repository URL.
	dir    string
	commit string
}

// gitRepo makes a repository with files committed.
func gitRepo(t *testing.T, files map[string]string) repo {
	t.Helper()
	r := gittest.New(t)
	return repo{dir: r.Dir, commit: r.CommitFiles("add files", files)}
}

// runRequest is a run request for r's commit on branch main with the
// given build spec, under a fresh run id.
func runRequest(r repo, spec *sourcev1.BuildSpec) *sourceeventsv1.RunRequested {
	return &sourceeventsv1.RunRequested{
		RunId:      ids.New(),
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: "hello", Url: r.dir},
		Commit:     r.commit,
		Ref:        "refs/heads/main",
		Branch:     "main",
		Trigger:    sourcev1.Trigger_TRIGGER_MANUAL,
		Pipeline:   &sourcev1.Pipeline{Build: spec},
	}
}

// publish publishes a run request as source does.
func (h *harness) publish(t *testing.T, req *sourceeventsv1.RunRequested) events.Event {
	t.Helper()
	ev, err := events.New(req, req.GetRunId(), req.GetRunId())
	if err != nil {
		t.Fatal(err)
	}
	h.publishEvent(t, ev, "")
	return ev
}

// publishUnchecked publishes req as the payload of a run request without
// the checks events.New makes, as a producer with other rules (or a bug)
// could. The event's chain id is a fresh run id, returned to find it by.
func (h *harness) publishUnchecked(t *testing.T, req *sourceeventsv1.RunRequested) string {
	t.Helper()
	valid := runRequest(repo{dir: "/nowhere", commit: "0123456789abcdef0123456789abcdef01234567"}, &sourcev1.BuildSpec{})
	ev, err := events.New(valid, valid.GetRunId(), valid.GetRunId())
	if err != nil {
		t.Fatal(err)
	}
	ev.Payload = proto.Clone(req)
	h.publishEvent(t, ev, "")
	return ev.ChainID
}

// publishEvent publishes ev. msgID, when set, replaces the Nats-Msg-Id (the
// event id) so that JetStream stores a copy of the same event, as a
// redelivery or a republished outbox row would.
func (h *harness) publishEvent(t *testing.T, ev events.Event, msgID string) {
	t.Helper()
	msg, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	ack, err := h.js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("publish %s: %v", ev.Kind.Subject, err)
	}
	if ack.Duplicate {
		t.Fatalf("publish %s: JetStream dropped it as a duplicate", ev.Kind.Subject)
	}
}

// deadLetter waits for the work queue to dead-letter the message of the
// run chainID and returns the reason it gives.
func (h *harness) deadLetter(t *testing.T, chainID string) string {
	t.Helper()
	return servicekittest.DeadLetter(t, h.js, build.Name, build.RunsConsumer, chainID)
}

// settle waits until every run request was acknowledged and every event the
// replicas enqueued was published, so that what was published can be
// counted.
func (h *harness) settle(t *testing.T, replicas ...*instance) {
	t.Helper()
	if len(replicas) == 0 {
		replicas = h.replicas
	}
	ctx := t.Context()
	servicekittest.Eventually(t, "run requests acknowledged and outboxes empty", func() bool {
		c, err := h.js.Consumer(ctx, "SOURCE", build.RunsConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		if err != nil || info.NumAckPending != 0 || info.NumPending != 0 {
			return false
		}
		for _, r := range replicas {
			if pending, err := events.Pending(ctx, r.db); err != nil || pending != 0 {
				return false
			}
		}
		return true
	})
	// Published events reach the recorder's ordered consumer shortly after.
	time.Sleep(200 * time.Millisecond)
}

// finished waits for the run's BuildFinished.
func (h *harness) finished(t *testing.T, runID string) *buildeventsv1.BuildFinished {
	t.Helper()
	return payload[*buildeventsv1.BuildFinished](t, h.rec.waitFor(t, runID, subjFinished))
}

func (i *instance) build(t *testing.T, runID string) *buildv1.Build {
	t.Helper()
	res, err := i.client.GetBuild(t.Context(), &buildv1.GetBuildRequest{RunId: runID})
	if err != nil {
		t.Fatalf("GetBuild(run_id %s): %v", runID, err)
	}
	return res.GetBuild()
}

func (i *instance) logs(t *testing.T, runID string) *buildv1.GetLogsResponse {
	t.Helper()
	res, err := i.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: runID, Limit: 10000})
	if err != nil {
		t.Fatalf("GetLogs(%s): %v", runID, err)
	}
	return res
}

func (i *instance) workspaces() string { return filepath.Join(i.cfg.DataDir, "workspaces") }

// recorder records every event published on the BUILD stream, read with an
// ordered consumer.
type recorder struct {
	mu   sync.Mutex
	evs  []events.Event
	errs []error
}

// record starts recording from the start of the stream until the test ends.
func record(t *testing.T, js jetstream.JetStream) *recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "BUILD", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"sluice.build.>"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Decode(m.Subject(), m.Headers(), m.Data())
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.errs = append(r.errs, err)
			return
		}
		r.evs = append(r.evs, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Stop()
		<-cc.Closed()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, err := range r.errs {
			t.Errorf("undecodable event on BUILD: %v", err)
		}
	})
	return r
}

// of returns the events of one run, in stream order.
func (r *recorder) of(runID string) []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, ev := range r.evs {
		if ev.ChainID == runID {
			out = append(out, ev)
		}
	}
	return out
}

// count is how many events were recorded.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

// waitFor waits for an event of the run with subject and returns the first.
func (r *recorder) waitFor(t *testing.T, runID, subject string) events.Event {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		for _, ev := range r.of(runID) {
			if ev.Kind.Subject == subject {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for run %s within %s; got %v", subject, runID, wait, subjects(r.of(runID)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// subjects lists the events' subjects.
func subjects(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Kind.Subject
	}
	return out
}
