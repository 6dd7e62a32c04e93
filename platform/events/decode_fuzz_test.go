package events_test

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/events"
)

// FuzzDecode feeds Decode what a hostile or broken publisher could put on a
// subject: any type header, subject and body. It never panics, refuses
// with ErrInvalidEvent (which consumers dead-letter at once), and what it
// accepts encodes and decodes again to the same payload.
func FuzzDecode(f *testing.F) {
	ev, err := events.New(runRequested("run-1"), "run-1", "run-1")
	if err != nil {
		f.Fatal(err)
	}
	m, err := ev.Msg()
	if err != nil {
		f.Fatal(err)
	}
	typ := m.Header.Get("ce-type")
	f.Add(m.Subject, typ, m.Data)
	f.Add(m.Subject, typ, []byte(`{"context":{"id":"x"},"subject":{"id":"y"},"customData":{"runId":"r"}}`))
	f.Add(m.Subject, typ, []byte(`{"customData":"not an object"}`))
	f.Add("sluice.audit.source", events.AuditType, []byte(`{"customData":{}}`))
	f.Add(m.Subject, "dev.cdevents.unknown.0.1.0", m.Data)
	f.Fuzz(func(t *testing.T, subject, ceType string, data []byte) {
		header := nats.Header{}
		header.Set("ce-type", ceType)
		got, err := events.Decode(subject, header, data)
		if err != nil {
			if !errors.Is(err, events.ErrInvalidEvent) {
				t.Fatalf("refused without ErrInvalidEvent: %v", err)
			}
			return
		}
		again, err := events.New(got.Payload, got.SubjectID, got.ChainID)
		if err != nil {
			// New also checks what Decode need not (the budget cuts,
			// the subject id): nothing more to hold it to.
			return
		}
		m, err := again.Msg()
		if err != nil {
			t.Fatal(err)
		}
		back, err := events.Decode(m.Subject, m.Header, m.Data)
		if err != nil || !proto.Equal(back.Payload, got.Payload) {
			t.Fatalf("an accepted event does not survive encoding again: %v", err)
		}
	})
}
