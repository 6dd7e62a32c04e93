package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/rpcserver"
)

// Module is the source service as an fx module. It needs *slog.Logger,
// jetstream.JetStream, *rpcserver.Readiness, fx.Shutdowner and
// fx.Lifecycle from the composition root, and puts its Connect and webhook
// routes in the server's group.
func Module(cfg Config) fx.Option {
	return fx.Module("source",
		fx.Supply(cfg, fx.Private),
		fx.Provide(fx.Private, newModuleStore, newModuleRelay, newModuleService, NewHandler),
		fx.Provide(fxkit.AsRoute(NewRoute), fxkit.AsRoute(NewWebhookRoute)),
		fx.Invoke(start),
	)
}

func newModuleStore(lc fx.Lifecycle, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	store, err := NewStore(context.Background(), cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(store.Close))
	return store, nil
}

func newModuleRelay(store *Store, js jetstream.JetStream, log *slog.Logger) *events.Relay {
	return events.NewRelay(store.DB(), js, log.With(slog.String("service", "source")))
}

func newModuleService(cfg Config, store *Store, relay *events.Relay, log *slog.Logger) (*Service, error) {
	return NewService(cfg, store, relay, log.With(slog.String("service", "source")))
}

type startParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Log        *slog.Logger
	Readiness  *rpcserver.Readiness
	JS         jetstream.JetStream
	Config     Config
	Service    *Service
	Relay      *events.Relay
}

// start runs the background work on start: provisioning then the event
// consumers, the outbox relay and the poller. The service is ready once
// its streams and consumers are provisioned.
func start(p startParams) {
	log := p.Log.With(slog.String("service", "source"))
	g := fxkit.Group(p.Lifecycle, log, p.Shutdowner)
	var provisioned atomic.Bool
	p.Readiness.Add("source", func() error {
		if !provisioned.Load() {
			return errors.New("NATS streams and consumers are not provisioned yet")
		}
		return nil
	})
	consumers := NewConsumers(p.Service, p.JS, log)
	p.Lifecycle.Append(fx.StartHook(func() {
		g.Go("provision+consume", func(ctx context.Context) error {
			if err := natsprovision.Apply(ctx, p.JS, deploy.NATS(), "source", natsprovision.Options{Log: log, Replicas: p.Config.NATSReplicas}); err != nil {
				return fmt.Errorf("provision NATS: %w", err)
			}
			provisioned.Store(true)
			return runConsumers(ctx, consumers)
		})
		g.Go("outbox", func(ctx context.Context) error {
			p.Relay.Run(ctx)
			return nil
		})
		if p.Config.PollInterval > 0 {
			g.Go("poll", p.Service.Poll)
		}
	}))
}

// runConsumers runs every consumer until ctx ends or one fails.
func runConsumers(ctx context.Context, consumers []*events.Consumer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(consumers))
	for i, c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
