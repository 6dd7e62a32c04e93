package natstest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/natstest"
)

func TestJetStreamSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	s := natstest.Start(t)
	if !strings.HasPrefix(s.URL, "nats://127.0.0.1:") {
		t.Fatalf("URL = %q, want nats://127.0.0.1:PORT", s.URL)
	}
	reconnected := make(chan struct{}, 1)
	nc := s.Connect(t, nats.ReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	}))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "EVENTS",
		Subjects: []string{"events.>"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		t.Fatalf("create stream: %v\n%s", err, s.Output())
	}
	ack, err := js.Publish(ctx, "events.a", []byte("hello"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}

	url := s.URL
	s.Restart(t)
	if s.URL != url {
		t.Errorf("URL changed on restart: %q -> %q", url, s.URL)
	}

	// A new connection sees the message the old server stored.
	js2, err := jetstream.New(s.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	assertMessage(ctx, t, js2, ack.Sequence, "hello")

	// The first connection reconnects by itself.
	select {
	case <-reconnected:
	case <-ctx.Done():
		t.Fatal("the connection made before Restart did not reconnect")
	}
	assertMessage(ctx, t, js, ack.Sequence, "hello")
}

func assertMessage(ctx context.Context, t *testing.T, js jetstream.JetStream, seq uint64, want string) {
	t.Helper()
	stream, err := js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	msg, err := stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("get message %d: %v", seq, err)
	}
	if string(msg.Data) != want || msg.Subject != "events.a" {
		t.Errorf("message %d = %s %q, want events.a %q", seq, msg.Subject, msg.Data, want)
	}
}

func TestStopIsIdempotentAndRestartable(t *testing.T) {
	s := natstest.Start(t)
	s.Stop()
	s.Stop()
	if nc, err := nats.Connect(s.URL, nats.Timeout(time.Second), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("connected to a stopped server")
	}
	s.Restart(t)
	nc := s.Connect(t)
	if err := nc.Publish("ping", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush after restart from stopped: %v", err)
	}
}
