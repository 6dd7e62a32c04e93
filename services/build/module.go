package build

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/deploy"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/natsprovision"
	"github.com/sluicehq/sluice/platform/rpcserver"
)

// Module is the build service for an fx application. It needs from the
// composition root: *slog.Logger, jetstream.JetStream, *rpcserver.Readiness
// (fxkit.Server), fx.Lifecycle and fx.Shutdowner. It puts its Connect route
// in the server's group; on start it provisions its JetStream resources,
// then consumes run requests and relays its outbox in the background.
func Module(cfg Config) fx.Option {
	cfg = cfg.WithDefaults()
	return fx.Module("build",
		fx.Supply(cfg, fx.Private),
		fx.Provide(fx.Private, provideStore, provideExecutor, NewService, NewHandler),
		fx.Provide(fxkit.AsRoute(NewRoute)),
		fx.Invoke(start),
	)
}

func provideStore(lc fx.Lifecycle, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := NewStore(context.Background(), cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(st.Close))
	return st, nil
}

func provideExecutor(cfg Config) executor.Executor {
	return &executor.Local{DefaultTimeout: cfg.DefaultStepTimeout}
}

type startParams struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Log        *slog.Logger
	JS         jetstream.JetStream
	Readiness  *rpcserver.Readiness
	Config     Config
	Service    *Service
}

func start(p startParams) {
	g := fxkit.Group(p.Lifecycle, p.Log, p.Shutdowner)
	var provisioned atomic.Bool
	p.Readiness.Add("build", func() error {
		if !provisioned.Load() {
			return errors.New("jetstream streams and consumers not provisioned yet")
		}
		return nil
	})
	p.Lifecycle.Append(fx.StartHook(func() {
		g.Go("provision+consume", func(ctx context.Context) error {
			if err := natsprovision.Apply(ctx, p.JS, deploy.NATS(), "build", natsprovision.Options{Log: p.Log, Replicas: p.Config.NATSReplicas}); err != nil {
				return fmt.Errorf("provision jetstream for build: %w", err)
			}
			provisioned.Store(true)
			return p.Service.Consume(ctx)
		})
		g.Go("outbox", p.Service.RelayOutbox)
	}))
}
