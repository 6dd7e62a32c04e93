package natsprovision_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/natstest"
)

func TestDeclarationsLoad(t *testing.T) {
	d, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		t.Fatal(err)
	}
	streams := map[string]bool{}
	for _, s := range d.Streams {
		streams[s.Name] = true
	}
	for _, want := range []string{"SOURCE", "BUILD", "TEST", "RELEASE", "NOTIFY", "DEADLETTER"} {
		if !streams[want] {
			t.Errorf("stream %s not declared", want)
		}
	}
	for owner, cs := range d.Consumers {
		for _, c := range cs {
			if !streams[c.Stream] {
				t.Errorf("consumer %s/%s reads undeclared stream %s", owner, c.Config.Durable, c.Stream)
			}
			if c.Config.AckPolicy != jetstream.AckExplicitPolicy || c.Config.MaxDeliver <= len(c.Config.BackOff) {
				t.Errorf("consumer %s: want explicit acks and MaxDeliver > len(BackOff)", c.Config.Durable)
			}
		}
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"unknown field":    {"streams/SOURCE.json": {Data: []byte(`{"name":"SOURCE","subjectz":["x"]}`)}},
		"name mismatch":    {"streams/SOURCE.json": {Data: []byte(`{"name":"OTHER"}`)}},
		"durable mismatch": {"consumers/build/a.json": {Data: []byte(`{"stream":"SOURCE","config":{"durable_name":"b"}}`)}},
		"no stream":        {"consumers/build/a.json": {Data: []byte(`{"config":{"durable_name":"a"}}`)}},
		"outbox":           {"consumers/build/outbox.json": {Data: []byte(`{"stream":"SOURCE","config":{"durable_name":"outbox"}}`)}},
	} {
		if _, err := natsprovision.Load(fsys); err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 2 {
		if err := natsprovision.ApplyAll(ctx, js, deploy.NATS(), natsprovision.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := js.Consumer(ctx, "SOURCE", "build-runs")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.FilterSubjects; len(got) != 1 || got[0] != "sluice.source.run.requested" {
		t.Fatalf("filter = %v", got)
	}
	if _, err := js.ObjectStore(ctx, "sluice-artifacts"); err != nil {
		t.Fatal(err)
	}
}

func TestConsumerWaitsForItsStream(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// source reads BUILD, TEST and RELEASE; they appear a moment later.
	done := make(chan error, 1)
	go func() { done <- natsprovision.Apply(ctx, js, deploy.NATS(), "source", natsprovision.Options{}) }()
	time.Sleep(300 * time.Millisecond)
	for _, s := range []string{"build", "test", "release"} {
		if err := natsprovision.Apply(ctx, js, deploy.NATS(), s, natsprovision.Options{WaitForStreams: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// And it gives up with a clear error when the stream never comes.
	short, cancel2 := context.WithTimeout(ctx, 20*time.Second)
	defer cancel2()
	srv2 := natstest.Start(t)
	js2, _ := jetstream.New(srv2.Connect(t))
	err = natsprovision.Apply(short, js2, deploy.NATS(), "test", natsprovision.Options{WaitForStreams: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("Apply succeeded without the BUILD stream")
	}
}

// A service that starts before NATS is up applies its declarations once
// NATS comes.
func TestApplyWaitsForNATS(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- natsprovision.Apply(ctx, js, deploy.NATS(), "build", natsprovision.Options{}) }()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("Apply returned while NATS was down: %v", err)
	default:
	}
	srv.Restart(t)
	// build's consumer reads SOURCE: the other services come too.
	if err := natsprovision.ApplyAll(ctx, js, deploy.NATS(), natsprovision.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCheckReplicas(t *testing.T) {
	for n, ok := range map[int]bool{-1: false, 0: true, 1: true, 3: true, 5: true, 6: false} {
		if err := natsprovision.CheckReplicas(n); (err == nil) != ok {
			t.Errorf("CheckReplicas(%d) = %v", n, err)
		}
	}
}

// Options.Replicas reaches the streams: a single server refuses 3.
func TestReplicasOverrideTheDeclarations(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = natsprovision.Apply(ctx, js, deploy.NATS(), "build", natsprovision.Options{Replicas: 3, WaitForStreams: time.Second})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "replicas") {
		t.Fatalf("Apply with 3 replicas on one server: %v", err)
	}
	if err := natsprovision.Apply(ctx, js, deploy.NATS(), "build", natsprovision.Options{Replicas: 1, WaitForStreams: time.Second}); err == nil || !strings.Contains(err.Error(), "SOURCE") {
		// build's consumer reads SOURCE, which nobody applied: the streams
		// and the store were applied with 1 replica.
		t.Fatalf("Apply with 1 replica: %v", err)
	}
	st, err := js.Stream(ctx, "BUILD")
	if err != nil || st.CachedInfo().Config.Replicas != 1 {
		t.Fatalf("BUILD: %v", err)
	}
}
