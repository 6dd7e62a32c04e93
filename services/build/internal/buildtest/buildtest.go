// Package buildtest holds what the build service's tests share: a real
// NATS server with the source and build declarations applied, git
// repositories made on the spot, run requests published the way source
// publishes them, and a recorder of the events build publishes.
package buildtest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// Wait is how long tests wait for something that should happen soon.
const Wait = 15 * time.Second

// Logger logs to the test's output.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// NATS is a nats-server with every stream, object store and consumer
// provisioned.
type NATS struct {
	Server *natstest.Server
	JS     jetstream.JetStream
}

// StartNATS starts the server and provisions the declarations the way the
// services do.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	srv := natstest.Start(t)
	js := JetStream(t, srv.Connect(t))
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	// Every service's declarations, concurrently, as the services start:
	// each one's consumers wait for the others' streams (source's read BUILD,
	// TEST and RELEASE; build's read SOURCE).
	services := []string{"source", "build", "test", "release", "notify"}
	errs := make([]error, len(services))
	var wg sync.WaitGroup
	for i, svc := range services {
		wg.Go(func() { errs[i] = natsprovision.Apply(ctx, js, deploy.NATS(), svc, natsprovision.Options{}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("provision %s: %v", services[i], err)
		}
	}
	return &NATS{Server: srv, JS: js}
}

// JetStream wraps nc.
func JetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// Publish publishes a run request as source does. msgID, when set,
// replaces the Nats-Msg-Id (the event id) so that JetStream stores a copy
// of the same event, as a redelivery or a republished outbox row would.
func (n *NATS) Publish(t testing.TB, req *sourceeventsv1.RunRequested, msgID string) events.Event {
	t.Helper()
	ev, err := events.New(req, req.GetRunId(), req.GetRunId())
	if err != nil {
		t.Fatal(err)
	}
	n.PublishEvent(t, ev, msgID)
	return ev
}

// PublishEvent publishes ev, with msgID as its Nats-Msg-Id when set.
func (n *NATS) PublishEvent(t testing.TB, ev events.Event, msgID string) {
	t.Helper()
	msg, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	if msgID != "" {
		msg.Header.Set(nats.MsgIdHdr, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	ack, err := n.JS.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("publish %s: %v", ev.Kind.Subject, err)
	}
	if ack.Duplicate {
		t.Fatalf("publish %s: JetStream dropped it as a duplicate", ev.Kind.Subject)
	}
}

// Repo is a git repository made by the test.
type Repo struct {
	// Dir is the working copy; it is also the repository URL.
	Dir    string
	Commit string
}

// GitRepo makes a repository in t.TempDir() with files committed.
func GitRepo(t testing.TB, files map[string]string) Repo {
	t.Helper()
	r := gittest.New(t)
	return Repo{Dir: r.Dir, Commit: r.CommitFiles("add files", files)}
}

// RunRequest is a run request for repo's commit on branch main with the
// given build spec, under a fresh run id.
func RunRequest(repo Repo, spec *sourcev1.BuildSpec) *sourceeventsv1.RunRequested {
	return &sourceeventsv1.RunRequested{
		RunId:      ids.New(),
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: "hello", Url: repo.Dir},
		Commit:     repo.Commit,
		Ref:        "refs/heads/main",
		Branch:     "main",
		Trigger:    sourcev1.Trigger_TRIGGER_MANUAL,
		Pipeline:   &sourcev1.Pipeline{Build: spec},
	}
}

// Recorder records every event published on the BUILD stream, read with an
// ordered consumer.
type Recorder struct {
	mu   sync.Mutex
	evs  []events.Event
	errs []error
}

// Record starts recording from the start of the stream until the test ends.
func Record(t testing.TB, js jetstream.JetStream) *Recorder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "BUILD", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"sluice.build.>"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &Recorder{}
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

// Of returns the events of one run, in stream order.
func (r *Recorder) Of(runID string) []events.Event {
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

// WaitFor waits for an event of the run with subject and returns the first.
func (r *Recorder) WaitFor(t testing.TB, runID, subject string) events.Event {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for {
		for _, ev := range r.Of(runID) {
			if ev.Kind.Subject == subject {
				return ev
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for run %s within %s; got %v", subject, runID, Wait, Subjects(r.Of(runID)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Subjects lists the events' subjects.
func Subjects(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Kind.Subject
	}
	return out
}

// Eventually polls cond until it holds or Wait passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Wait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
