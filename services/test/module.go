package test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// Module is the test service as an fx module. It needs *slog.Logger,
// jetstream.JetStream, *rpcserver.Readiness, fx.Shutdowner and
// fx.Lifecycle from the composition root, and puts its Connect route in
// the server's group.
func Module(cfg Config) fx.Option {
	return fx.Module("test",
		fx.Supply(fx.Private, cfg),
		fx.Provide(
			fx.Private,
			newStore,
			newSourceClient,
			NewService,
			NewHandler,
		),
		fx.Provide(fxkit.AsRoute(NewRoute)),
		fx.Invoke(start),
	)
}

func newStore(lc fx.Lifecycle, cfg Config) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := NewStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(store.Close))
	return store, nil
}

// newSourceClient is the client of the source service, with its own
// connection pool closed on stop.
func newSourceClient(lc fx.Lifecycle, cfg Config) sourcev1connect.SourceServiceClient {
	transport := &http.Transport{}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		transport = t.Clone()
	}
	lc.Append(fx.StopHook(transport.CloseIdleConnections))
	return sourcev1connect.NewSourceServiceClient(&http.Client{Transport: transport}, cfg.SourceURL)
}

// start provisions test's streams and consumer, then consumes
// BuildFinished events and relays the outbox, until the process stops.
// The service is ready once provisioning is done.
func start(lc fx.Lifecycle, log *slog.Logger, sd fx.Shutdowner, js jetstream.JetStream, readiness *rpcserver.Readiness, svc *Service) {
	g := fxkit.Group(lc, log, sd)
	var provisioned atomic.Bool
	readiness.Add("test", func() error {
		if !provisioned.Load() {
			return errors.New("provisioning NATS streams and consumers")
		}
		return nil
	})
	lc.Append(fx.StartHook(func() {
		g.Go("test: provision+consume", func(ctx context.Context) error {
			if err := natsprovision.Apply(ctx, js, deploy.NATS(), "test", natsprovision.Options{Log: log, Replicas: svc.cfg.NATSReplicas}); err != nil {
				return err
			}
			provisioned.Store(true)
			log.Info("test: consuming BuildFinished events", slog.Int("workers", svc.cfg.Workers))
			return svc.Consumer().Run(ctx)
		})
		g.Go("test: outbox", func(ctx context.Context) error {
			svc.Relay().Run(ctx)
			return nil
		})
	}))
}
