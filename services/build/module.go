package build

import (
	"log/slog"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
)

// Module is the build service as an fx module (servicekit.Module): the
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
		fx.Provide(fx.Private, NewStore, newExecutor, newSecrets, NewService, NewHandler, parts),
		fx.Provide(servicekit.Route(NewRoute)),
	)
}

// newExecutor runs the build steps as local processes, in the step
// sandbox unless the operator turned it off, and those that name an image
// in containers.
func newExecutor(lc fx.Lifecycle, cfg Config, log *slog.Logger) (executor.Backend, error) {
	steps, err := container.StepBackend(cfg.Isolation, cfg.Containers, cfg.DefaultStepTimeout, log)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(steps.Close))
	return steps, nil
}

// newSecrets asks source for the values of the secrets steps ask for, as
// the build service.
func newSecrets(cfg Config, calls servicekit.CallTransport) *stepsecrets.Resolver {
	return stepsecrets.NewResolver(Name, cfg.SourceURL, calls)
}

// parts are what runs beside the API: the work-queue consumer.
func parts(s *Service) servicekit.Parts {
	return servicekit.Parts{Consumers: s.Consumers(), Loops: []servicekit.Loop{
		{Name: "container sweep", Run: executor.SweepLoop(s.exec, Name, s.stageEnded, s.log)},
	}}
}
