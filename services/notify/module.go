package notify

import (
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb"
)

// Module is the notify service as an fx module (servicekit.Module): the
// process provides *slog.Logger, jetstream.JetStream,
// *rpcserver.Readiness and servicekit.BuildInfo, and serves the route the
// module adds.
func Module(cfg Config) fx.Option {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fx.Error(err)
	}
	return servicekit.Module(servicekit.Spec{
		Name:       Name,
		Settings:   cfg.Settings,
		Migrations: []sqldb.Migrations{Migrations()},
	},
		fx.Supply(fx.Private, cfg),
		fx.Provide(fx.Private, NewStore, NewWorker, NewFanout, NewService, NewHandler, parts),
		fx.Provide(servicekit.Route(NewRoute)),
	)
}

// parts are what runs beside the API: the consumers that fan every event
// out into deliveries, and the worker that delivers them.
func parts(cfg Config, fanout *Fanout, worker *Worker) (servicekit.Parts, error) {
	consumers, err := fanout.Consumers(cfg.Workers)
	if err != nil {
		return servicekit.Parts{}, err
	}
	return servicekit.Parts{
		Consumers: consumers,
		Loops:     []servicekit.Loop{{Name: "deliveries", Run: worker.Run}},
	}, nil
}
