package release

import (
	"log/slog"
	"net/http"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// Module is the release service as an fx module (servicekit.Module): the
// process provides *slog.Logger, jetstream.JetStream and
// *rpcserver.Readiness, and serves the route the module adds.
func Module(cfg Config) fx.Option {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return fx.Error(err)
	}
	return servicekit.Module(servicekit.Spec{
		Name:       Name,
		Settings:   cfg.Settings,
		Migrations: []sqldb.Migrations{Migrations(), steplog.Migrations()},
		Cancels:    true,
	},
		fx.Supply(fx.Private, cfg),
		fx.Provide(fx.Private, NewStore, newSourceClient, newSecrets, newExecutor, NewService, NewHandler, parts),
		fx.Provide(servicekit.Route(NewRoute)),
	)
}

// newSourceClient is source's Connect client, calling as the release
// service (source's ListCommits policy allows it).
func newSourceClient(cfg Config, calls servicekit.CallTransport) SourceClient {
	return sourcev1connect.NewSourceServiceClient(&http.Client{Transport: calls}, cfg.SourceURL)
}

// newSecrets asks source for the values of the secrets deploy commands ask
// for, as the release service.
func newSecrets(cfg Config, calls servicekit.CallTransport) *stepsecrets.Resolver {
	return stepsecrets.NewResolver(Name, cfg.SourceURL, calls)
}

// newExecutor runs deploy and verify commands as local processes, in the
// step sandbox unless the operator turned it off.
func newExecutor(cfg Config, log *slog.Logger) (executor.Executor, error) {
	return executor.NewLocal(cfg.Isolation, 0, log)
}

// parts are what runs beside the API: the consumer of finished test runs,
// and the pruning of the artifacts kept for rollbacks; manual rollbacks in
// progress are interrupted first when the service stops.
func parts(s *Service) servicekit.Parts {
	return servicekit.Parts{
		Consumers: s.Consumers(),
		Loops:     []servicekit.Loop{{Name: "prune release artifacts", Run: s.pruneLoop}},
		Stop:      s.Close,
	}
}
