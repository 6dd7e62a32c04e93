package notify

import (
	"context"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit"
)

// Consumers are the service's event ports: one consumer per stream notify
// listens to (deploy/nats/consumers/notify: every event of the source,
// build, test and release streams; never its own, whose delivery events
// would otherwise cause deliveries), each handing every event to the
// fan-out (fanout.go).
func (s *Service) Consumers() []servicekit.Consumer {
	var out []servicekit.Consumer
	for _, durable := range []string{"notify-source", "notify-build", "notify-test", "notify-release"} {
		out = append(out, servicekit.Consumer{
			Durable: durable,
			Handler: func(ctx context.Context, ev events.Event, _ events.Delivery) error {
				return s.FanOut(ctx, durable, ev)
			},
			Workers: s.cfg.Workers,
		})
	}
	return out
}
