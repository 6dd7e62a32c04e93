package events

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Why a message was dead-lettered: the cause label of
// sluice_events_deadlettered_total. The reason's text is in the dead
// letter, never in a label.
const (
	// CausePanic: the handler, or decoding the event, panicked.
	CausePanic = "panic"
	// CauseInvalid: the message is not an event this consumer can decode
	// and validate.
	CauseInvalid = "invalid"
	// CausePermanent: the handler refused the event for good
	// (ErrPermanent).
	CausePermanent = "permanent"
	// CauseExhausted: the handler failed on every delivery the consumer's
	// max_deliver allows.
	CauseExhausted = "exhausted"
	// CauseInterrupted: a stop interrupted the handler on the last
	// delivery.
	CauseInterrupted = "interrupted"
	// CauseRefused: NATS refused the event from the outbox for good.
	CauseRefused = "refused"
)

// Metrics count what a service's consumers and outbox relay do. A nil
// *Metrics counts nothing.
type Metrics struct {
	deadLettered *prometheus.CounterVec
}

// NewMetrics registers the counters with reg:
// sluice_events_deadlettered_total{consumer,cause}, where consumer is the
// durable consumer's name or "outbox". A process that runs several services
// gives each a registerer with its own service label
// (prometheus.WrapRegistererWith), as servicekit does.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_events_deadlettered_total",
		Help: "Messages dead-lettered to the DEADLETTER stream, by consumer (or outbox) and cause (panic, invalid, permanent, exhausted, interrupted, refused).",
	}, []string{"consumer", "cause"})}
	if err := reg.Register(m.deadLettered); err != nil {
		return nil, fmt.Errorf("events: register sluice_events_deadlettered_total: %w", err)
	}
	return m, nil
}

func (m *Metrics) deadLetter(consumer, cause string) {
	if m != nil {
		m.deadLettered.WithLabelValues(consumer, cause).Inc()
	}
}
