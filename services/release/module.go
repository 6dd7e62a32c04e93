package release

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/rpcserver"
)

// Module is the release service for fx. It needs *slog.Logger,
// jetstream.JetStream, *rpcserver.Readiness, fx.Shutdowner and fx.Lifecycle
// from the composition root, and puts its Connect route in the server's
// group.
func Module(cfg Config) fx.Option {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fx.Error(err)
	}
	return fx.Module("release",
		fx.Supply(cfg, fx.Private),
		fx.Provide(newComponents, fx.Private),
		fx.Provide(func(c *components) *Service { return c.svc }, fx.Private),
		fx.Provide(NewHandler, fx.Private),
		fx.Provide(fxkit.AsRoute(NewRoute)),
		fx.Invoke(start),
	)
}

// components are the service and what runs beside it.
type components struct {
	svc      *Service
	relay    *events.Relay
	consumer *events.Consumer
}

// NewClients makes the Connect clients of source and build over client.
func NewClients(cfg Config, client *http.Client) (SourceClient, BuildClient) {
	return sourcev1connect.NewSourceServiceClient(client, cfg.SourceURL),
		buildv1connect.NewBuildServiceClient(client, cfg.BuildURL)
}

// newComponents opens the database and builds the service; the database
// and the clients' idle connections are closed on stop.
func newComponents(lc fx.Lifecycle, cfg Config, log *slog.Logger, js jetstream.JetStream) (*components, error) {
	log = log.With(slog.String("service", "release"))
	db, err := OpenDB(context.Background(), cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	// Its own transport, so that its idle connections end with the module.
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	client := &http.Client{Transport: transport}
	lc.Append(fx.StopHook(func() error {
		transport.CloseIdleConnections()
		return db.Close()
	}))
	source, build := NewClients(cfg, client)
	relay := events.NewRelay(db, js, log)
	svc, err := NewService(cfg, Deps{
		Store: NewStore(db), JetStream: js, Source: source, Build: build,
		Executor: &executor.Local{}, Outbox: relay, Log: log,
	})
	if err != nil {
		return nil, err
	}
	return &components{svc: svc, relay: relay, consumer: NewConsumer(js, log, svc)}, nil
}

// start provisions NATS, then consumes, and relays the outbox, in the
// background; readiness is false until provisioning finished. On stop,
// manual rollbacks are interrupted first, then the loops end.
func start(lc fx.Lifecycle, sd fx.Shutdowner, log *slog.Logger, js jetstream.JetStream, ready *rpcserver.Readiness, cfg Config, c *components) {
	g := fxkit.Group(lc, log, sd)
	var provisioned atomic.Bool
	ready.Add("release", func() error {
		if !provisioned.Load() {
			return errors.New("provisioning NATS streams and consumers")
		}
		return nil
	})
	lc.Append(fx.Hook{
		OnStart: func(context.Context) error {
			g.Go("release: provision+consume", func(ctx context.Context) error {
				if err := natsprovision.Apply(ctx, js, deploy.NATS(), "release", natsprovision.Options{Log: log, Replicas: cfg.NATSReplicas}); err != nil {
					return fmt.Errorf("provision NATS for release: %w", err)
				}
				provisioned.Store(true)
				return c.consumer.Run(ctx)
			})
			g.Go("release: outbox", func(ctx context.Context) error {
				c.relay.Run(ctx)
				return nil
			})
			return nil
		},
		OnStop: func(context.Context) error {
			c.svc.Close()
			return nil
		},
	})
}
