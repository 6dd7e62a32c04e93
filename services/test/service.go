package test

import (
	"context"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/test/domain"
)

// Service is the test service's application: it runs test runs for
// successful builds and answers questions about them.
type Service struct {
	cfg    Config
	log    *slog.Logger
	store  *Store
	logs   *steplog.Store
	js     jetstream.JetStream
	source sourcev1connect.SourceServiceClient
	exec   executor.Executor
	relay  *events.Relay
}

// NewService makes the service. cfg must be valid (defaults applied);
// source is the source service's client, asked for each run's pipeline.
func NewService(cfg Config, log *slog.Logger, store *Store, js jetstream.JetStream, source sourcev1connect.SourceServiceClient) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{
		cfg:    cfg,
		log:    log,
		store:  store,
		logs:   steplog.New(store.DB()),
		js:     js,
		source: source,
		exec:   &executor.Local{DefaultTimeout: cfg.DefaultStepTimeout},
		relay:  events.NewRelay(store.DB(), js, log.With(slog.String("component", "outbox"))),
	}, nil
}

// Relay publishes the events the service enqueued; Run it until the
// process stops.
func (s *Service) Relay() *events.Relay { return s.relay }

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
