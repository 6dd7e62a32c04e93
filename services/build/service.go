package build

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/services/build/domain"
)

// Names of the JetStream resources the service uses; they are declared
// under deploy/nats.
const (
	// RunsStream is the stream the run requests come from.
	RunsStream = "SOURCE"
	// RunsConsumer is the work-queue consumer every replica pulls from.
	RunsConsumer = "build-runs"
)

const (
	// logFlushInterval is how often buffered step output is stored.
	logFlushInterval = 100 * time.Millisecond
	// defaultListLimit is ListBuilds' page size when none is asked for.
	defaultListLimit = 100
)

// Service is the build service's application: it runs builds for run
// requests and answers queries about them.
type Service struct {
	cfg   Config
	store *Store
	logs  *steplog.Store
	relay *events.Relay
	js    jetstream.JetStream
	exec  executor.Executor
	log   *slog.Logger
}

// NewService makes the service. cfg gets its defaults and is validated;
// exec runs the steps (executor.Local in production).
func NewService(cfg Config, store *Store, js jetstream.JetStream, exec executor.Executor, log *slog.Logger) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case store == nil:
		return nil, errors.New("build: NewService: store is nil")
	case js == nil:
		return nil, errors.New("build: NewService: jetstream is nil")
	case exec == nil:
		return nil, errors.New("build: NewService: executor is nil")
	case log == nil:
		return nil, errors.New("build: NewService: logger is nil")
	}
	log = log.With(slog.String("service", "build"), slog.String("worker", cfg.WorkerID))
	return &Service{
		cfg:   cfg,
		store: store,
		logs:  steplog.New(store.DB()),
		relay: events.NewRelay(store.DB(), js, log),
		js:    js,
		exec:  exec,
		log:   log,
	}, nil
}

// Consume runs builds for the run requests in the work queue until ctx
// ends (the consumer must be provisioned).
func (s *Service) Consume(ctx context.Context) error {
	c := events.NewConsumer(s.js, s.log, events.ConsumerConfig{
		Service:     "build",
		Stream:      RunsStream,
		Durable:     RunsConsumer,
		Concurrency: s.cfg.Workers,
		Heartbeat:   s.cfg.Heartbeat,
	}, s.handleRunRequested)
	return c.Run(ctx)
}

// RelayOutbox publishes the service's events until ctx ends.
func (s *Service) RelayOutbox(ctx context.Context) error {
	s.relay.Run(ctx)
	return nil
}

// Build returns a build by its id or its run's id.
func (s *Service) Build(ctx context.Context, id string) (domain.Build, error) {
	return s.store.Get(ctx, id)
}

// Builds returns up to limit builds (default 100), newest first.
func (s *Service) Builds(ctx context.Context, limit int) ([]domain.Build, error) {
	if limit <= 0 {
		limit = defaultListLimit
	}
	return s.store.List(ctx, limit)
}

// Logs returns the run's stored log lines from fromSeq on (only step's when
// step is set); a run without a build is not found.
func (s *Service) Logs(ctx context.Context, runID, step string, fromSeq int64, limit int) (steplog.Page, error) {
	if _, err := s.store.ByRun(ctx, runID); err != nil {
		return steplog.Page{}, err
	}
	return s.logs.Read(ctx, runID, step, fromSeq, limit)
}

// TailLogs calls fn with the run's log lines from fromSeq on as they are
// stored, until the log is complete or ctx ends. A run whose build has not
// started yet is waited for.
func (s *Service) TailLogs(ctx context.Context, runID, step string, fromSeq int64, fn func([]steplog.Line) error) error {
	return s.logs.Tail(ctx, runID, step, fromSeq, fn)
}
