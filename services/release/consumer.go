package release

import (
	"context"
	"fmt"
	"time"

	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit"
)

// The consumer release runs (declared in deploy/nats/consumers/release).
const (
	consumerDurable = "release-tests"
	// heartbeat extends the message's lease while a release stage runs
	// (deploys take minutes; the consumer's AckWait is one).
	heartbeat = 10 * time.Second
)

// Consumers are the service's event ports: finished test runs, from the
// release-tests consumer.
func (s *Service) Consumers() []servicekit.Consumer {
	return []servicekit.Consumer{{
		Durable:   consumerDurable,
		Handler:   s.HandleTestRunFinished,
		Workers:   s.cfg.Workers,
		Heartbeat: heartbeat,
	}}
}

// HandleTestRunFinished takes a finished test run to its release stage
// (ReleaseRun). The event was validated when it was received.
func (s *Service) HandleTestRunFinished(ctx context.Context, ev events.Event, d events.Delivery) error {
	run, ok := ev.Payload.(*testeventsv1.TestRunFinished)
	if !ok {
		return fmt.Errorf("%w: %s got a %s, want a TestRunFinished", events.ErrPermanent, consumerDurable, ev.Kind.Type)
	}
	return s.ReleaseRun(ctx, ev.ID, run, d)
}
