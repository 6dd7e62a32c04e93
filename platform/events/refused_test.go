package events_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/natstest"
)

// A consumer the NATS user may read but not pull from stops with an error
// naming the refused subject instead of fetching nothing for ever; one it
// may not even read stops the same way.
func TestConsumerStopsWhenNATSRefusesIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conf := filepath.Join(t.TempDir(), "nats.conf")
	err := os.WriteFile(conf, []byte(`accounts { A { jetstream: enabled, users: [
  { user: admin, password: a }
  { user: reader, password: r, permissions: {
      publish: { allow: ["$JS.API.CONSUMER.INFO.EVENTS.readable"] }
      subscribe: { allow: ["_INBOX.>"] } } }
] } }
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithConfig(conf))
	adm, err := jetstream.New(srv.Connect(t, nats.UserInfo("admin", "a")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"events.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, durable := range []string{"readable", "hidden"} {
		if _, err := adm.CreateConsumer(ctx, "EVENTS", jetstream.ConsumerConfig{Durable: durable, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	js, err := jetstream.New(srv.Connect(t, nats.UserInfo("reader", "r")))
	if err != nil {
		t.Fatal(err)
	}
	for durable, subject := range map[string]string{
		"readable": "$JS.API.CONSUMER.MSG.NEXT.EVENTS.readable",
		"hidden":   "$JS.API.CONSUMER.INFO.EVENTS.hidden",
	} {
		c := events.NewConsumer(js, quiet(), events.ConsumerConfig{Service: "reader", Stream: "EVENTS", Durable: durable},
			func(context.Context, events.Event, events.Delivery) error { return nil })
		start := time.Now()
		err := c.Run(ctx)
		if !errors.Is(err, natsconn.ErrRefused) || !strings.Contains(err.Error(), `"`+subject+`"`) {
			t.Errorf("%s: Run = %v, want a refusal of %s", durable, err, subject)
		}
		if elapsed := time.Since(start); elapsed > 20*time.Second {
			t.Errorf("%s: Run took %s to give up", durable, elapsed)
		}
	}
}
