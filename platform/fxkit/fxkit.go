// Package fxkit holds the fx modules every Sluice process is composed of
// besides its services: NATS, the HTTP server, logging. A service binary
// composes these with one service module; `sluice up` with all five.
package fxkit

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/rpcserver"
)

// FxLogger logs fx's own events at debug level only (failures at error).
func FxLogger(log *slog.Logger) fxevent.Logger {
	l := &fxevent.SlogLogger{Logger: log}
	l.UseLogLevel(slog.LevelDebug)
	return l
}

// NATS provides *nats.Conn and jetstream.JetStream to the whole process;
// the connection drains on stop.
func NATS(cfg natsconn.Config) fx.Option {
	return fx.Module("nats", fx.Provide(natsProvider(cfg)))
}

// ServiceNATS provides a connection of the module it is in, and of that
// module's children, only: in `sluice up`, each service connects as its
// own NATS user.
func ServiceNATS(cfg natsconn.Config) fx.Option {
	return fx.Provide(fx.Private, natsProvider(cfg))
}

func natsProvider(cfg natsconn.Config) func(fx.Lifecycle, *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	return func(lc fx.Lifecycle, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
		nc, js, err := natsconn.Connect(cfg, log)
		if err != nil {
			return nil, nil, err
		}
		lc.Append(fx.StopHook(func(ctx context.Context) error {
			closed := make(chan struct{})
			nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
			if err := nc.Drain(); err != nil {
				// Already closed or never connected: nothing to drain.
				nc.Close()
				return nil //nolint:nilerr // stopping must go on
			}
			select {
			case <-closed:
			case <-ctx.Done():
				nc.Close()
			}
			return nil
		}))
		return nc, js, nil
	}
}

// ServerParams are the server's inputs.
type ServerParams struct {
	fx.In
	Log       *slog.Logger
	Readiness *rpcserver.Readiness
	Registry  *prometheus.Registry
	Routes    []rpcserver.Route `group:"routes"`
}

// Server provides the readiness checks, the process's metrics registry
// (as *prometheus.Registry and prometheus.Registerer: services register
// their metrics with it, each under its own service label, and /metrics
// serves it) and the HTTP server with every route services put in the
// routes group (servicekit.Route); it listens on start and drains on stop. List it after the services' modules, so that it
// starts after them (their databases are open before the first request)
// and stops first (requests drain before the services stop).
func Server(cfg rpcserver.Config) fx.Option {
	return fx.Module("server",
		fx.Provide(rpcserver.NewReadiness),
		fx.Provide(prometheus.NewRegistry, func(r *prometheus.Registry) prometheus.Registerer { return r }),
		fx.Provide(func(lc fx.Lifecycle, p ServerParams) (*rpcserver.Server, error) {
			cfg := cfg
			cfg.Registry = p.Registry
			s, err := rpcserver.New(cfg, p.Log, p.Readiness, p.Routes)
			if err != nil {
				return nil, err
			}
			lc.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
			return s, nil
		}),
		// The server is always started, even when nothing else asks for it.
		fx.Invoke(func(*rpcserver.Server) {}),
	)
}

// StartTimeout is how long a process waits for every OnStart hook.
const StartTimeout = 2 * time.Minute
