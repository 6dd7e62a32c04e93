package release

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/services/release/domain"
)

// SourceClient is what release asks the source service (its generated
// Connect client satisfies it).
type SourceClient interface {
	GetRun(context.Context, *sourcev1.GetRunRequest) (*sourcev1.GetRunResponse, error)
	ListCommits(context.Context, *sourcev1.ListCommitsRequest) (*sourcev1.ListCommitsResponse, error)
}

// BuildClient is what release asks the build service.
type BuildClient interface {
	GetBuild(context.Context, *buildv1.GetBuildRequest) (*buildv1.GetBuildResponse, error)
}

// Kicker wakes the outbox relay after a transaction that enqueued events
// (*events.Relay).
type Kicker interface{ Kick() }

// Deps are the service's collaborators.
type Deps struct {
	Store *Store
	// JetStream reads artifacts from the object store.
	JetStream jetstream.JetStream
	Source    SourceClient
	Build     BuildClient
	// Executor runs deploy and verify commands (executor.Local in production).
	Executor executor.Executor
	Outbox   Kicker
	Log      *slog.Logger
}

// Service is the release application: the release stage of runs, manual
// rollbacks and the queries behind the API.
type Service struct {
	cfg    Config
	store  *Store
	js     jetstream.JetStream
	source SourceClient
	build  BuildClient
	exec   executor.Executor
	outbox Kicker
	log    *slog.Logger
	locks  *keyedLocks

	// base outlives requests: manual rollbacks run on it, so a client that
	// hangs up does not cut a deploy in half. Close cancels it.
	base     context.Context
	stopBase context.CancelFunc
}

// NewService makes the service. cfg gets its defaults and must validate.
func NewService(cfg Config, deps Deps) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case deps.Store == nil:
		return nil, errors.New("release: Deps.Store is nil")
	case deps.JetStream == nil:
		return nil, errors.New("release: Deps.JetStream is nil")
	case deps.Source == nil:
		return nil, errors.New("release: Deps.Source is nil")
	case deps.Build == nil:
		return nil, errors.New("release: Deps.Build is nil")
	case deps.Executor == nil:
		return nil, errors.New("release: Deps.Executor is nil")
	case deps.Outbox == nil:
		return nil, errors.New("release: Deps.Outbox is nil")
	case deps.Log == nil:
		return nil, errors.New("release: Deps.Log is nil")
	}
	base, stop := context.WithCancel(context.Background())
	return &Service{
		cfg: cfg, store: deps.Store, js: deps.JetStream, source: deps.Source, build: deps.Build,
		exec: deps.Executor, outbox: deps.Outbox, log: deps.Log, locks: newKeyedLocks(deps.Store.DB().Lock),
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
