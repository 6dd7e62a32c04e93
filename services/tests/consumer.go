package tests

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
)

// consumerDurable is the consumer of BuildFinished events every replica
// shares (deploy/nats/consumers/test/test-builds.json).
const consumerDurable = "test-builds"

// Consumers are the service's event ports: finished builds, from the
// test-builds consumer every replica shares.
func (s *Service) Consumers() []servicekit.Consumer {
	return []servicekit.Consumer{{
		Durable:   consumerDurable,
		Handler:   s.HandleBuildFinished,
		Workers:   s.cfg.Workers,
		Heartbeat: heartbeat,
	}}
}

// HandleBuildFinished is the consumer's handler: it tests the build
// (testBuild). A nil return acknowledges the event; an error has it
// redelivered.
func (s *Service) HandleBuildFinished(ctx context.Context, ev events.Event, d events.Delivery) error {
	bf, ok := ev.Payload.(*buildeventsv1.BuildFinished)
	if !ok {
		return fmt.Errorf("%w: %s carries %T, not a BuildFinished", events.ErrPermanent, ev.Kind.Type, ev.Payload)
	}
	return s.testBuild(ctx, ev.ID, bf, d)
}
