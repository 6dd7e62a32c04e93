package tests

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
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
	// Executor runs the steps (executor.Local in production).
	Executor executor.Executor
	Log      *slog.Logger
}

// Service is the test service's application: it runs test runs for
// successful builds and answers questions about them.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store *Store
	logs  *steplog.Store
	js    jetstream.JetStream
	exec  executor.Executor
	relay *events.Relay
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.DB == nil || d.Outbox == nil || d.JetStream == nil || d.Executor == nil || d.Log == nil {
		return nil, errors.New("test: NewService: every dependency is required")
	}
	return &Service{
		cfg:   cfg,
		log:   d.Log,
		store: d.Store,
		logs:  steplog.New(d.DB),
		js:    d.JetStream,
		exec:  d.Executor,
		relay: d.Outbox,
	}, nil
}

// TestRun returns the test run (by test run id or run id) and its suites.
func (s *Service) TestRun(ctx context.Context, id string) (domain.TestRun, []domain.Suite, error) {
	run, err := s.store.TestRun(ctx, id)
	if err != nil {
		return domain.TestRun{}, nil, err
	}
	suites, err := s.store.Suites(ctx, run.ID)
	if err != nil {
		return domain.TestRun{}, nil, err
	}
	return run, suites, nil
}

// Cases returns the cases of the test run (by test run id or run id), only
// those with status unless it is 0.
func (s *Service) Cases(ctx context.Context, id string, status domain.CaseStatus) ([]domain.Case, error) {
	run, err := s.store.TestRun(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.store.Cases(ctx, run.ID, status)
}

// Logs returns the test steps' log lines of the run (by run id or test run
// id) from fromSeq on.
func (s *Service) Logs(ctx context.Context, id, step string, fromSeq int64, limit int) (steplog.Page, error) {
	run, err := s.store.TestRun(ctx, id)
	if err != nil {
		return steplog.Page{}, err
	}
	return s.logs.Read(ctx, run.RunID, step, fromSeq, limit)
}
