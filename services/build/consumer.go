package build

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
)

// RunsConsumer is the work-queue consumer every replica pulls run requests
// from (deploy/nats/consumers/build/build-runs.json).
const RunsConsumer = "build-runs"

// Consumers are the service's event ports: every replica takes run
// requests from the build-runs work queue.
func (s *Service) Consumers() []servicekit.Consumer {
	return []servicekit.Consumer{{
		Durable:   RunsConsumer,
		Handler:   s.HandleRunRequested,
		Workers:   s.cfg.Workers,
		Heartbeat: s.cfg.Heartbeat,
	}}
}

// HandleRunRequested is the work queue's handler: it builds the run
// (runBuild). A nil return acknowledges the request; an error has it
// redelivered, and the build taken over by the next delivery.
func (s *Service) HandleRunRequested(ctx context.Context, ev events.Event, d events.Delivery) error {
	req, ok := ev.Payload.(*sourceeventsv1.RunRequested)
	if !ok {
		return fmt.Errorf("%w: %s carries %T, not a RunRequested", events.ErrPermanent, ev.Kind.Type, ev.Payload)
	}
	return s.runBuild(ctx, req, d)
}
