package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/artifacts"
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
	// Executor runs the steps: executor.Steps in production, the process
	// executor for steps without an image and the container engine's
	// backend for those with one (container.NewSteps).
	Executor executor.Backend
	Log      *slog.Logger
	// Egress is what repository URLs may reach (the allow-egress setting).
	Egress *egress.Policy
	// Secrets gets the values of the secrets steps ask for.
	Secrets *stepsecrets.Resolver
	// Cancels knows the cancelled runs and stops the builds held of them
	// (servicekit, Spec.Cancels).
	Cancels *runcancel.Book
	// Supervisor guards the service's own background goroutines (lease
	// renewals, log flushes): a panic in one is logged and counted, not
	// fatal. nil: runner's default.
	Supervisor *runner.Supervisor `optional:"true"`
}

// Service is the build service's application: it runs builds for run
// requests and answers queries about them.
type Service struct {
	cfg     Config
	store   *Store
	logs    *steplog.Store
	relay   *events.Relay
	js      jetstream.JetStream
	exec    executor.Backend
	secrets *stepsecrets.Resolver
	cancels *runcancel.Book
	log     *slog.Logger
	// egress is what checkouts may reach.
	egress *egress.Policy
	sup    *runner.Supervisor
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case d.Store == nil, d.DB == nil, d.Outbox == nil, d.JetStream == nil, d.Executor == nil, d.Log == nil, d.Egress == nil, d.Cancels == nil:
		return nil, errors.New("build: NewService: every dependency is required")
	}
	return &Service{
		cfg:     cfg,
		store:   d.Store,
		logs:    steplog.New(d.DB, cfg.Logs, steplog.GuardedBy(d.Supervisor)),
		relay:   d.Outbox,
		js:      d.JetStream,
		exec:    d.Executor,
		secrets: d.Secrets,
		cancels: d.Cancels,
		log:     d.Log.With(slog.String("worker", cfg.WorkerID)),
		// Checkouts go through the egress policy.
		egress: d.Egress,
		sup:    d.Supervisor,
	}, nil
}

// Build returns a build: the run runID's when runID is set, else the one
// id names (a build id or a run id). A caller whose token is limited to
// other repositories is refused (auth.CheckRepository).
func (s *Service) Build(ctx context.Context, id, runID string) (domain.Build, error) {
	var b domain.Build
	var err error
	if runID != "" {
		b, err = s.store.ByRun(ctx, runID)
	} else {
		b, err = s.store.Get(ctx, id)
	}
	if err != nil {
		return domain.Build{}, err
	}
	if err := auth.CheckRepository(ctx, b.Repository.Name); err != nil {
		return domain.Build{}, err
	}
	return b, nil
}

// OpenArtifact opens artifact name of run runID's build for reading; the
// reader checks the content against the build's record as it goes
// (artifacts.Store.Open). Close it.
func (s *Service) OpenArtifact(ctx context.Context, runID, name string) (domain.Artifact, io.ReadCloser, error) {
	b, err := s.Build(ctx, "", runID)
	if err != nil {
		return domain.Artifact{}, nil, err
	}
	i := slices.IndexFunc(b.Artifacts, func(a domain.Artifact) bool { return a.Name == name })
	if i < 0 {
		names := make([]string, len(b.Artifacts))
		for j, a := range b.Artifacts {
			names[j] = a.Name
		}
		has := "it has none"
		if len(names) > 0 {
			has = "it has " + strings.Join(names, ", ")
		}
		return domain.Artifact{}, nil, fmt.Errorf("the build of run %s has no artifact %q (%s): %w", runID, name, has, apierror.ErrNotFound)
	}
	a := b.Artifacts[i]
	store, err := artifacts.Open(ctx, s.js)
	if err != nil {
		return domain.Artifact{}, nil, fmt.Errorf("artifact store: %w: %w", err, apierror.ErrUnavailable)
	}
	r, err := store.Open(ctx, artifacts.Artifact{Name: a.Name, Object: a.Object, SHA256: a.SHA256, Size: a.Size})
	switch {
	case errors.Is(err, artifacts.ErrNotFound):
		return domain.Artifact{}, nil, fmt.Errorf("%w (the artifact store keeps a build's artifacts 30 days): %w", err, apierror.ErrNotFound)
	case errors.Is(err, artifacts.ErrCorrupt):
		return domain.Artifact{}, nil, fmt.Errorf("%w: %w", err, apierror.ErrDataLoss)
	case err != nil:
		return domain.Artifact{}, nil, err
	}
	return a, r, nil
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
// step is set); a run without a build is not found, and a caller whose
// token is limited to other repositories than the build's is refused.
func (s *Service) Logs(ctx context.Context, runID, step string, fromSeq int64, limit int) (steplog.Page, error) {
	b, err := s.store.ByRun(ctx, runID)
	if err != nil {
		return steplog.Page{}, err
	}
	if err := auth.CheckRepository(ctx, b.Repository.Name); err != nil {
		return steplog.Page{}, err
	}
	return s.logs.Read(ctx, runID, step, fromSeq, limit)
}

// TailLogs calls fn with the run's log lines from fromSeq on as they are
// stored, until the log is complete or ctx ends. The first call has no
// lines: it says that the caller may read the log (a streaming caller
// answers then), and comes after the check of the build's repository
// against the caller's token. A run whose build has not started yet is
// waited for, at most Config.TailWait (then not_found): a caller that may
// read every repository is answered at once; one whose token is limited to
// some repositories only once the build exists, as its repository is not
// known before.
func (s *Service) TailLogs(ctx context.Context, runID, step string, fromSeq int64, fn func([]steplog.Line) error) error {
	found, err := s.checkRunLog(ctx, runID)
	if err != nil {
		return err
	}
	if err := fn(nil); err != nil {
		return err
	}
	if !found {
		if _, err := s.awaitBuild(ctx, runID); err != nil {
			return err
		}
	}
	return s.logs.Tail(ctx, runID, step, fromSeq, fn)
}

// buildPoll is how often awaitBuild looks for a build that does not exist
// yet (steplog.Store.Tail polls at the same pace).
const buildPoll = 500 * time.Millisecond

// checkRunLog refuses a caller whose token may not read the repository of
// the run's build; found says whether the build exists. When the run has
// no build yet, a caller who may read every repository passes; one limited
// to some repositories waits for the build (awaitBuild) to learn its
// repository (so does a context without an identity, which
// auth.CheckRepository then refuses).
func (s *Service) checkRunLog(ctx context.Context, runID string) (found bool, err error) {
	b, err := s.store.ByRun(ctx, runID)
	switch {
	case err == nil:
		return true, auth.CheckRepository(ctx, b.Repository.Name)
	case !errors.Is(err, apierror.ErrNotFound):
		return false, err
	}
	if _, limited := auth.Repositories(ctx); !limited {
		return false, nil
	}
	if b, err = s.awaitBuild(ctx, runID); err != nil {
		return false, err
	}
	return true, auth.CheckRepository(ctx, b.Repository.Name)
}

// awaitBuild waits for the run's build to exist, at most Config.TailWait.
func (s *Service) awaitBuild(ctx context.Context, runID string) (domain.Build, error) {
	deadline := time.Now().Add(s.cfg.TailWait)
	for {
		b, err := s.store.ByRun(ctx, runID)
		if err == nil || !errors.Is(err, apierror.ErrNotFound) {
			return b, err
		}
		if !time.Now().Before(deadline) {
			return domain.Build{}, fmt.Errorf("run %q has no build after waiting %s: it is not a run, or its build has not started: %w", runID, s.cfg.TailWait, apierror.ErrNotFound)
		}
		select {
		case <-ctx.Done():
			return domain.Build{}, ctx.Err()
		case <-time.After(buildPoll):
		}
	}
}

// stageEnded says whether run's build is over: what containers it
// started are then left over (executor.SweepLoop).
func (s *Service) stageEnded(ctx context.Context, runID string) (bool, error) {
	b, err := s.store.ByRun(ctx, runID)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		// Not this installation's (its record is made before any
		// container): never swept.
		return false, nil
	case err != nil:
		return false, err
	}
	return b.Status != domain.Running && b.Status != domain.Queued, nil
}
