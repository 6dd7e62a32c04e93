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
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"

	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/runner"
)

// RoutesGroup is the fx value group services put their rpcserver.Route in.
const RoutesGroup = `group:"routes"`

// AsRoute annotates a constructor returning rpcserver.Route for the group.
func AsRoute(f any) any {
	return fx.Annotate(f, fx.ResultTags(RoutesGroup))
}

// FxLogger logs fx's own events at debug level only (failures at error).
func FxLogger(log *slog.Logger) fxevent.Logger {
	l := &fxevent.SlogLogger{Logger: log}
	l.UseLogLevel(slog.LevelDebug)
	return l
}

// NATS provides *nats.Conn and jetstream.JetStream; the connection drains
// on stop.
func NATS(cfg natsconn.Config) fx.Option {
	return fx.Module("nats",
		fx.Provide(func(lc fx.Lifecycle, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
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
		}),
	)
}

// ServerParams are the server's inputs.
type ServerParams struct {
	fx.In
	Log       *slog.Logger
	Readiness *rpcserver.Readiness
	Routes    []rpcserver.Route `group:"routes"`
}

// Server provides the readiness checks and the HTTP server with every
// route in the group; it listens on start and drains on stop.
func Server(cfg rpcserver.Config) fx.Option {
	return fx.Module("server",
		fx.Provide(rpcserver.NewReadiness),
		fx.Provide(func(lc fx.Lifecycle, p ServerParams) (*rpcserver.Server, error) {
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

// Group makes a runner.Group whose failing loop shuts the process down,
// stopped on fx stop. Each service makes its own.
func Group(lc fx.Lifecycle, log *slog.Logger, sd fx.Shutdowner) *runner.Group {
	g := runner.New(log, func(error) { _ = sd.Shutdown(fx.ExitCode(1)) })
	lc.Append(fx.StopHook(g.Stop))
	return g
}

// StartTimeout is how long a process waits for every OnStart hook.
const StartTimeout = 2 * time.Minute
