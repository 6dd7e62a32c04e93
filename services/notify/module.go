package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/rpcserver"
)

// Module is the notify service for an fx application. It needs, from the
// composition root, *slog.Logger, jetstream.JetStream and
// *rpcserver.Readiness (fxkit.NATS and fxkit.Server provide them), and puts
// its Connect route in the server's group.
func Module(cfg Config) fx.Option {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fx.Error(err)
	}
	return fx.Module(service,
		fx.Supply(cfg, fx.Private),
		fx.Provide(fx.Private, newStoreForFx, newRelay, NewWorker, NewFanout, NewService, NewHandler),
		fx.Provide(fxkit.AsRoute(NewRoute)),
		fx.Invoke(start),
	)
}

// newStoreForFx opens the database (so a bad one fails the start) and
// closes it on stop, after the loops that use it have stopped.
func newStoreForFx(lc fx.Lifecycle, cfg Config) (*Store, error) {
	store, err := NewStore(context.Background(), cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(store.Close))
	return store, nil
}

func newRelay(store *Store, js jetstream.JetStream, log *slog.Logger) *events.Relay {
	return events.NewRelay(store.DB(), js, log.With(slog.String("component", "notify-outbox")))
}

type startParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Log        *slog.Logger
	JS         jetstream.JetStream
	Readiness  *rpcserver.Readiness
	Config     Config
	Relay      *events.Relay
	Worker     *Worker
	Fanout     *Fanout
}

// start runs, from OnStart, the provisioning of notify's streams and
// consumers followed by the consumers, the outbox relay and the delivery
// worker; readiness stays false until provisioning finished.
func start(p startParams) error {
	consumers, err := NewConsumers(p.JS, p.Log, p.Config, p.Fanout)
	if err != nil {
		return err
	}
	g := fxkit.Group(p.Lifecycle, p.Log, p.Shutdowner)
	var provisioned atomic.Bool
	p.Readiness.Add(service, func() error {
		if !provisioned.Load() {
			return errors.New("JetStream streams and consumers are not provisioned yet")
		}
		return nil
	})
	p.Lifecycle.Append(fx.StartHook(func() {
		g.Go("notify provisioning", func(ctx context.Context) error {
			if err := natsprovision.Apply(ctx, p.JS, deploy.NATS(), service, natsprovision.Options{Log: p.Log, Replicas: p.Config.NATSReplicas}); err != nil {
				return fmt.Errorf("provision notify's JetStream streams and consumers: %w", err)
			}
			provisioned.Store(true)
			for _, c := range consumers {
				g.Go("notify consumer "+c.Durable, c.Run)
			}
			return nil
		})
		g.Go("notify outbox", func(ctx context.Context) error {
			p.Relay.Run(ctx)
			return nil
		})
		g.Go("notify deliveries", p.Worker.Run)
	}))
	return nil
}
