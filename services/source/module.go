package source

import (
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb"
)

// Module is the source service as an fx module (servicekit.Module): the
// process provides *slog.Logger, jetstream.JetStream and
// *rpcserver.Readiness, and serves the routes the module adds (the Connect
// API and the webhooks).
func Module(cfg Config) fx.Option { return module(cfg) }

// module is Module with extra options inside it (a test's fx.Invoke that
// takes the *Service).
func module(cfg Config, extra ...fx.Option) fx.Option {
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
		fx.Provide(fx.Private, NewStore, NewService, NewHandler, NewAccessHandler, NewSecretHandler, NewAuditHandler, parts),
		fx.Provide(servicekit.Route(NewRoute), servicekit.Route(NewAccessRoute), servicekit.Route(NewSecretRoute), servicekit.Route(NewAuditRoute), servicekit.Route(NewWebhookRoute)),
		fx.Invoke(startWebhookListener),
		fx.Options(extra...),
	)
}

// parts are what runs beside the API: the consumers that fold the other
// stages' events into run summaries and keep the audit log, the publisher
// of tokens, the admission of waiting runs, the audit log's pruning and
// the poller, and the schedules.
func parts(s *Service, cfg Config) servicekit.Parts {
	p := servicekit.Parts{Consumers: s.Consumers(), Loops: []servicekit.Loop{
		{Name: "tokens", Run: s.SyncTokens}, {Name: "secret-keys", Run: s.ReencryptSecrets}, {Name: "admission", Run: s.Admit},
		{Name: "schedules", Run: s.Schedule},
	}, Expiries: s.Expiries()}
	if cfg.PollInterval > 0 {
		p.Loops = append(p.Loops, servicekit.Loop{Name: "poll", Run: s.Poll})
	}
	return p
}
