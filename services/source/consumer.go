package source

import (
	"context"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit"
)

// Consumers are the service's event ports: one consumer per stream of the
// stages that follow (deploy/nats/consumers/source), each handing every
// event of its stream to the run summary's fold (summary.go), and the
// audit log's, which keeps every service's audit entries (audit.go).
func (s *Service) Consumers() []servicekit.Consumer {
	var out []servicekit.Consumer
	for _, durable := range []string{"source-build", "source-test", "source-release"} {
		out = append(out, servicekit.Consumer{
			Durable: durable,
			Handler: func(ctx context.Context, ev events.Event, _ events.Delivery) error {
				return s.Fold(ctx, durable, ev)
			},
		})
	}
	out = append(out, servicekit.Consumer{
		Durable: auditConsumer,
		Handler: func(ctx context.Context, ev events.Event, _ events.Delivery) error { return s.KeepAuditEntry(ctx, ev) },
	})
	return out
}
