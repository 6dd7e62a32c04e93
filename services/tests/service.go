package tests

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/services/tests/domain"
)

// Deps are the service's collaborators; fx provides them (servicekit).
type Deps struct {
	fx.In
	Store *Store
	// DB holds the step logs beside the test runs.
	DB *sqldb.DB
	// Outbox publishes what the service enqueued.
	Outbox *events.Relay
	// JetStream holds the artifact object store.
	JetStream jetstream.JetStream
	// Executor runs the steps: executor.Steps in production, the process
	// executor for steps without an image and the container engine's
	// backend for those with one (container.StepBackend).
	Executor executor.Backend
	Log      *slog.Logger
	// Egress is what repository URLs may reach (the allow-egress setting).
	Egress *egress.Policy
	// Secrets gets the values of the secrets steps ask for.
	Secrets *stepsecrets.Resolver
	// Cancels knows the cancelled runs and stops the test runs held of
	// them (servicekit, Spec.Cancels).
	Cancels *runcancel.Book
	// Supervisor guards the service's own background goroutines (lease
	// renewals, log flushes): a panic in one is logged and counted, not
	// fatal. nil: runner's default.
	Supervisor *runner.Supervisor `optional:"true"`
}

// Service is the test service's application: it runs test runs for
// successful builds and answers questions about them.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store *Store
	logs  *steplog.Store
	js    jetstream.JetStream
	exec  executor.Backend
	relay *events.Relay
	// egress is what checkouts may reach.
	egress *egress.Policy
	// secrets gets the values of the secrets steps ask for.
	secrets *stepsecrets.Resolver
	cancels *runcancel.Book
	sup     *runner.Supervisor
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.DB == nil || d.Outbox == nil || d.JetStream == nil || d.Executor == nil || d.Log == nil || d.Egress == nil || d.Cancels == nil {
		return nil, errors.New("test: NewService: every dependency is required")
	}
	return &Service{
		cfg:     cfg,
		log:     d.Log,
		store:   d.Store,
		logs:    steplog.New(d.DB, cfg.Logs, steplog.GuardedBy(d.Supervisor)),
		js:      d.JetStream,
		exec:    d.Executor,
		secrets: d.Secrets,
		cancels: d.Cancels,
		relay:   d.Outbox,
		// Checkouts go through the egress policy.
		egress: d.Egress,
		sup:    d.Supervisor,
	}, nil
}

// TestRun returns a test run with its steps and suites: the run runID's
// when runID is set, else the one id names (a test run id or a run id). A
// caller whose token is limited to other repositories is refused
// (auth.CheckRepository).
func (s *Service) TestRun(ctx context.Context, id, runID string) (domain.TestRun, error) {
	run, err := s.find(ctx, id, runID)
	if err != nil {
		return domain.TestRun{}, err
	}
	if err := auth.CheckRepository(ctx, run.Repository.Name); err != nil {
		return domain.TestRun{}, err
	}
	if run.Steps, err = s.store.Steps(ctx, run.ID); err != nil {
		return domain.TestRun{}, err
	}
	if run.Suites, err = s.store.Suites(ctx, run.ID); err != nil {
		return domain.TestRun{}, err
	}
	return run, nil
}

// Cases returns a page of the cases of a test run (named as for TestRun,
// and refused as TestRun refuses) in report order, only those with status
// unless it is 0, and the token of the next page ("" after the last).
func (s *Service) Cases(ctx context.Context, id, runID string, status domain.CaseStatus, page paging.Page) ([]domain.Case, string, error) {
	run, err := s.find(ctx, id, runID)
	if err != nil {
		return nil, "", err
	}
	if err := auth.CheckRepository(ctx, run.Repository.Name); err != nil {
		return nil, "", err
	}
	if page.After != nil && page.After.ID != run.ID {
		return nil, "", fmt.Errorf("%w: page_token is a token of another test run's cases", apierror.ErrInvalidArgument)
	}
	cases, err := s.store.Cases(ctx, run.ID, status, page)
	if err != nil {
		return nil, "", err
	}
	cases, next := paging.Cut(page, cases, func(c domain.Case) paging.Cursor {
		return paging.Cursor{Time: int64(c.Position), ID: run.ID}
	})
	return cases, next, nil
}

// find returns the test run of runID when it is set, else the one id
// names.
func (s *Service) find(ctx context.Context, id, runID string) (domain.TestRun, error) {
	if runID != "" {
		return s.store.TestRunOfRun(ctx, runID)
	}
	return s.store.TestRun(ctx, id)
}

// Logs returns the test steps' log lines of the run from fromSeq on. id is
// the run's id (GetLogs' run_id) or, as before run_id was the one name,
// its test run's id. A caller whose token is limited to other repositories
// than the test run's is refused.
func (s *Service) Logs(ctx context.Context, id, step string, fromSeq int64, limit int) (steplog.Page, error) {
	run, err := s.store.TestRun(ctx, id)
	if err != nil {
		return steplog.Page{}, err
	}
	if err := auth.CheckRepository(ctx, run.Repository.Name); err != nil {
		return steplog.Page{}, err
	}
	return s.logs.Read(ctx, run.RunID, step, fromSeq, limit)
}

// stageEnded says whether run's test run is over: what containers it
// started are then left over (executor.SweepLoop).
func (s *Service) stageEnded(ctx context.Context, runID string) (bool, error) {
	r, err := s.store.TestRunOfRun(ctx, runID)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		// Not this installation's (its record is made before any
		// container): never swept.
		return false, nil
	case err != nil:
		return false, err
	}
	return r.Status != domain.StatusRunning, nil
}
