package build

import (
	"context"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/services/build/domain"
)

// Deps are the service's collaborators; fx provides them (servicekit).
type Deps struct {
	fx.In
	Store *Store
	// DB holds the step logs beside the builds.
	DB *sqldb.DB
	// Outbox publishes what the service enqueued.
	Outbox *events.Relay
	// JetStream holds the artifact object store.
	JetStream jetstream.JetStream
	// Executor runs the steps (executor.Local in production).
	Executor executor.Executor
	Log      *slog.Logger
	// Egress is what repository URLs may reach (the allow-egress setting).
	Egress *egress.Policy
}

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
	// egress is what checkouts may reach.
	egress *egress.Policy
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case d.Store == nil, d.DB == nil, d.Outbox == nil, d.JetStream == nil, d.Executor == nil, d.Log == nil, d.Egress == nil:
		return nil, errors.New("build: NewService: every dependency is required")
	}
	return &Service{
		cfg:   cfg,
		store: d.Store,
		logs:  steplog.New(d.DB),
		relay: d.Outbox,
		js:    d.JetStream,
		exec:  d.Executor,
		log:   d.Log.With(slog.String("worker", cfg.WorkerID)),
		// Checkouts go through the egress policy.
		egress: d.Egress,
	}, nil
}

// Build returns a build: the run runID's when runID is set, else the one
// id names (a build id or a run id).
func (s *Service) Build(ctx context.Context, id, runID string) (domain.Build, error) {
	if runID != "" {
		return s.store.ByRun(ctx, runID)
	}
	return s.store.Get(ctx, id)
}

// Builds returns a page of builds, newest first, and the token of the next
// page ("" after the last).
func (s *Service) Builds(ctx context.Context, page paging.Page) ([]domain.Build, string, error) {
	builds, err := s.store.List(ctx, page)
	if err != nil {
		return nil, "", err
	}
	builds, next := paging.Cut(page, builds, func(b domain.Build) paging.Cursor {
		return paging.Cursor{Time: sqldb.Nanos(b.CreateTime), ID: b.ID}
	})
	return builds, next, nil
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
