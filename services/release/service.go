package release

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/services/release/domain"
)

// SourceClient is what release asks the source service, the one read-only
// query of its stage: the commits since the last release, for the version
// and the changelog (its generated Connect client satisfies it).
type SourceClient interface {
	ListCommits(context.Context, *sourcev1.ListCommitsRequest) (*sourcev1.ListCommitsResponse, error)
}

// Deps are the service's collaborators; fx provides them (servicekit).
type Deps struct {
	fx.In
	Store *Store
	// Outbox publishes what the service enqueued.
	Outbox *events.Relay
	// JetStream reads artifacts from the object store.
	JetStream jetstream.JetStream
	Source    SourceClient
	// Executor runs deploy and verify commands (executor.Local in production).
	Executor executor.Executor
	Log      *slog.Logger
}

// Service is the release application: the release stage of runs, manual
// rollbacks and the queries behind the API.
type Service struct {
	cfg    Config
	store  *Store
	js     jetstream.JetStream
	source SourceClient
	exec   executor.Executor
	outbox *events.Relay
	log    *slog.Logger
	locks  *keyedLocks

	// base outlives requests: manual rollbacks run on it, so a client that
	// hangs up does not cut a deploy in half. Close cancels it.
	base     context.Context
	stopBase context.CancelFunc
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Outbox == nil || d.JetStream == nil || d.Source == nil || d.Executor == nil || d.Log == nil {
		return nil, errors.New("release: NewService: every dependency is required")
	}
	base, stop := context.WithCancel(context.Background())
	return &Service{
		cfg: cfg, store: d.Store, js: d.JetStream, source: d.Source,
		exec: d.Executor, outbox: d.Outbox, log: d.Log, locks: newKeyedLocks(d.Store.db.Lock),
		base: base, stopBase: stop,
	}, nil
}

// Close interrupts manual rollbacks in progress (their deployments are
// marked failed as interrupted).
func (s *Service) Close() { s.stopBase() }

// enqueue writes an event into the outbox inside tx.
func enqueue(ctx context.Context, tx *sql.Tx, payload proto.Message, subjectID, chainID string) error {
	ev, err := events.New(payload, subjectID, chainID)
	if err != nil {
		return err
	}
	return events.Enqueue(ctx, tx, ev)
}

// inTx runs fn in a transaction and wakes the outbox relay after it committed.
func (s *Service) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := s.store.InTx(ctx, fn); err != nil {
		return err
	}
	s.outbox.Kick()
	return nil
}

// newDeployment is a deployment of rel to environment, not started yet.
func newDeployment(rel domain.Release, environment, runID string, rollback bool) domain.Deployment {
	return domain.Deployment{
		ID:          ids.New(),
		ReleaseID:   rel.ID,
		Repository:  rel.Repository.Name,
		Environment: environment,
		Version:     rel.Version.String(),
		RunID:       runID,
		Status:      domain.DeploymentDeploying,
		Rollback:    rollback,
		CreatedAt:   time.Now().UTC(),
	}
}

// ListReleases returns the repository's releases, newest first.
func (s *Service) ListReleases(ctx context.Context, repository string, limit int) ([]domain.Release, error) {
	return s.store.ListReleases(ctx, repository, limit)
}

// ListDeployments returns the repository's deployments (to environment when
// not empty), newest first.
func (s *Service) ListDeployments(ctx context.Context, repository, environment string, limit int) ([]domain.Deployment, error) {
	return s.store.ListDeployments(ctx, repository, environment, limit)
}
