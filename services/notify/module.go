package notify

import (
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/stepsecrets"
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
		fx.Provide(fx.Private, NewStore, NewService, NewHandler, parts, newSecrets),
		fx.Provide(servicekit.Route(NewRoute)),
	)
}

// parts are what runs beside the API: the consumers that fan every event
// out into deliveries (and commit statuses and forge releases), and the loops that deliver
// them.
func parts(s *Service) servicekit.Parts {
	return servicekit.Parts{
		Consumers: s.Consumers(),
		Loops: []servicekit.Loop{{Name: "deliveries", Run: s.Deliver}, {Name: "commit statuses", Run: s.DeliverForgeStatuses},
			{Name: "forge releases", Run: s.MakeForgeReleases},
			{Name: "secret-keys", Run: s.ReencryptSecrets}},
	}
}

// newSecrets asks source for the forge tokens of the runs' repositories,
// as the notify service.
func newSecrets(cfg Config, calls servicekit.CallTransport) *stepsecrets.Resolver {
	return stepsecrets.NewResolver(Name, cfg.SourceURL, calls)
}
