package notify

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/services/notify/domain"
)

// deliveryHeaders are the NATS headers of an event that a delivery
// forwards as HTTP headers: the CloudEvents attributes (binary mode names
// them the same in both bindings), the chainid extension, and the trace.
func deliveryHeaders() []string {
	return []string{
		events.HeaderID, events.HeaderType, events.HeaderSource, events.HeaderSubject, events.HeaderTime,
		events.HeaderSpecVersion, events.HeaderChainID, events.HeaderTraceparent,
	}
}

// Fanout turns each consumed event into one pending delivery per
// subscription that wants it.
type Fanout struct {
	store  *Store
	worker *Worker
	log    *slog.Logger
}

// NewFanout makes the fan-out; its Handler is given to the consumers.
func NewFanout(store *Store, worker *Worker, log *slog.Logger) *Fanout {
	return &Fanout{store: store, worker: worker, log: log}
}

// Handler handles the events of the durable consumer named consumer: in one
// transaction it marks the event processed and creates its deliveries, so a
// redelivered or republished event creates none, then wakes the worker.
func (f *Fanout) Handler(consumer string) events.Handler {
	return func(ctx context.Context, ev events.Event, _ events.Delivery) error {
		// Subscribers get the message exactly as it was on NATS.
		msg := ev.Received
		if msg == nil {
			var err error
			if msg, err = ev.Msg(); err != nil {
				return fmt.Errorf("%w: encode event %s: %w", events.ErrPermanent, ev.ID, err)
			}
		}
		headers := map[string]string{}
		for _, name := range deliveryHeaders() {
			if v := msg.Header.Get(name); v != "" {
				headers[name] = v
			}
		}
		n, err := f.store.FanOut(ctx, consumer, domain.Delivery{
			EventID:    ev.ID,
			EventType:  ev.Kind.Type,
			Subject:    ev.SubjectID,
			Repository: domain.RepositoryOf(ev.Payload),
			ChainID:    ev.ChainID,
			Headers:    headers,
			Body:       msg.Data,
		}, time.Now(), ids.New)
		if err != nil {
			return err
		}
		if n > 0 {
			f.worker.Kick()
		}
		return nil
	}
}

// Consumers are the service's event ports: one consumer per stream it
// listens to, each declared in deploy/nats/consumers/notify (every event
// of the source, build, test and release streams; never its own), all
// fanning out with the same handler.
func (f *Fanout) Consumers(workers int) ([]servicekit.Consumer, error) {
	decl, err := natsprovision.Load(deploy.NATS())
	if err != nil {
		return nil, fmt.Errorf("read NATS declarations: %w", err)
	}
	files := decl.Consumers[Name]
	if len(files) == 0 {
		return nil, fmt.Errorf("deploy/nats/consumers/%s declares no consumer", Name)
	}
	consumers := make([]servicekit.Consumer, 0, len(files))
	for _, file := range files {
		durable := file.Config.Durable
		consumers = append(consumers, servicekit.Consumer{Durable: durable, Handler: f.Handler(durable), Workers: workers})
	}
	return consumers, nil
}
