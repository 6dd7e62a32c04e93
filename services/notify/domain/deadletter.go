package domain

import (
	"strings"
	"time"
)

// DeadLetterPrefix starts the subject of every dead letter:
// sluice.deadletter.<service>.<consumer>.
const DeadLetterPrefix = "sluice.deadletter."

// DeadLetter is one message of the DEADLETTER stream: an event a service's
// consumer gave up on, or one NATS refused from its outbox (consumer
// "outbox"). Everything but Sequence, Time and BodySize comes from the
// message: untrusted text.
type DeadLetter struct {
	// Sequence is its sequence in the stream.
	Sequence uint64
	// Time is when it was dead-lettered.
	Time time.Time
	// Service and Consumer come from its subject.
	Service, Consumer string
	// Reason is why (its Sluice-Deadletter-Reason header).
	Reason string
	// Subject and Stream are where the event came from, or was to go.
	Subject, Stream string
	// The event's CloudEvents attributes, when it has them.
	EventID, EventType, EventSource, RunID string
	// BodySize is the size in bytes of the body it keeps.
	BodySize int
	// Body is the body as text, bounded; empty unless asked for.
	Body string
}

// DeadLetterFilter narrows a list of dead letters; an empty field keeps
// every value. The API validates both as names (no dots, no wildcards).
type DeadLetterFilter struct {
	Service  string
	Consumer string
}

// Subject is the NATS subject filter that reads what f keeps.
func (f DeadLetterFilter) Subject() string {
	service, consumer := f.Service, f.Consumer
	if service == "" {
		service = "*"
	}
	if consumer == "" {
		consumer = "*"
	}
	return DeadLetterPrefix + service + "." + consumer
}

// DeadLetterOrigin splits a dead letter's subject into the service and the
// consumer it names; ok is false for a subject of another shape.
func DeadLetterOrigin(subject string) (service, consumer string, ok bool) {
	rest, found := strings.CutPrefix(subject, DeadLetterPrefix)
	if !found {
		return "", "", false
	}
	service, consumer, found = strings.Cut(rest, ".")
	if !found || service == "" || consumer == "" || strings.Contains(consumer, ".") {
		return "", "", false
	}
	return service, consumer, true
}
