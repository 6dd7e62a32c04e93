package release

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"google.golang.org/protobuf/proto"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/services/release/domain"
)

// SourceClient is what release asks the source service, the one read-only
// query of its stage: the commits since the last release, for the version
// and the changelog, and, a page of one commit at a time, whether a commit
// is an ancestor of another (ancestry.go). Its generated Connect client
// satisfies it.
type SourceClient interface {
	ListCommits(context.Context, *sourcev1.ListCommitsRequest) (*sourcev1.ListCommitsResponse, error)
}

// Deps are the service's collaborators; fx provides them (servicekit).
type Deps struct {
	fx.In
	Store *Store
	// DB holds the release logs beside the releases, and the leases of
	// the locks that keep replicas' deploys of one environment apart.
	DB *sqldb.DB
	// Outbox publishes what the service enqueued.
	Outbox *events.Relay
	// JetStream reads artifacts from the build's object store, keeps a
	// copy of each release's in its own (KeptBucket), and keeps the
	// environments' deploy state in another (StateBucket).
	JetStream jetstream.JetStream
	Source    SourceClient
	// Executor runs deploy and verify commands (executor.Local in production).
	Executor executor.Executor
	Log      *slog.Logger
	// Egress is what verify.http probes and repository URLs may reach (the
	// allow-egress setting).
	Egress *egress.Policy
	// Secrets gets the values of the secrets deploy commands ask for.
	Secrets *stepsecrets.Resolver
	// Cancels knows the cancelled runs, whose release does not begin
	// (servicekit, Spec.Cancels).
	Cancels *runcancel.Book
	// Supervisor guards the service's own background goroutines (lease
	// renewals, log flushes): a panic in one is logged and counted, not
	// fatal. nil: runner's default.
	Supervisor *runner.Supervisor `optional:"true"`
}

// Service is the release application: the release stage of runs
// (release.go, deploy.go, rollback.go), manual rollbacks and the queries
// behind the API.
type Service struct {
	cfg    Config
	store  *Store
	logs   *steplog.Store
	js     jetstream.JetStream
	source SourceClient
	exec   executor.Executor
	egress *egress.Policy
	// secrets gets the values of the secrets deploy commands ask for.
	secrets *stepsecrets.Resolver
	outbox  *events.Relay
	cancels *runcancel.Book
	log     *slog.Logger
	locks   *keyedLocks
	// branches is the platform's rule of which branches deploy
	// automatically where (Config.EnvironmentBranches).
	branches domain.EnvironmentBranches

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
	if d.Store == nil || d.DB == nil || d.Outbox == nil || d.JetStream == nil || d.Source == nil || d.Executor == nil || d.Egress == nil || d.Log == nil || d.Cancels == nil {
		return nil, errors.New("release: NewService: every dependency is required")
	}
	branches, err := domain.ParseEnvironmentBranches(cfg.EnvironmentBranches)
	if err != nil {
		return nil, fmt.Errorf("%s: environment-branches: %w", Name, err)
	}
	holder, err := os.Hostname()
	if err != nil || holder == "" {
		holder = Name
	}
	holder = fmt.Sprintf("%s-%d-%s", holder, os.Getpid(), ids.New())
	locks := newKeyedLocks(d.DB, holder, lockLease{Duration: cfg.LeaseDuration, Heartbeat: cfg.Heartbeat, StopTime: lockStopTime, Supervisor: d.Supervisor}, d.Log)
	base, stop := context.WithCancel(context.Background())
	return &Service{
		cfg: cfg, store: d.Store, logs: steplog.New(d.DB, cfg.Logs, steplog.GuardedBy(d.Supervisor)), js: d.JetStream, source: d.Source,
		exec: d.Executor, egress: d.Egress, secrets: d.Secrets, outbox: d.Outbox, cancels: d.Cancels, log: d.Log, locks: locks,
		branches: branches, base: base, stopBase: stop,
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

// ListReleases returns a page of releases (a repository's, or a run's),
// newest first, and the next page's token; a caller whose token may not
// read them is refused (checkList).
func (s *Service) ListReleases(ctx context.Context, f ListFilter, page paging.Page) ([]domain.Release, string, error) {
	if err := s.checkList(ctx, f); err != nil {
		return nil, "", err
	}
	rels, err := s.store.ListReleases(ctx, f, page)
	if err != nil {
		return nil, "", err
	}
	rels, next := paging.Cut(page, rels, func(r domain.Release) paging.Cursor {
		return paging.Cursor{Time: sqldb.Nanos(r.CreatedAt), ID: r.ID}
	})
	return rels, next, nil
}

// ListDeployments returns a page of deployments (a repository's, a run's,
// to one environment or all), newest first, and the next page's token; a
// caller whose token may not read them is refused (checkList).
func (s *Service) ListDeployments(ctx context.Context, f ListFilter, page paging.Page) ([]domain.Deployment, string, error) {
	if err := s.checkList(ctx, f); err != nil {
		return nil, "", err
	}
	ds, err := s.store.ListDeployments(ctx, f, page)
	if err != nil {
		return nil, "", err
	}
	ds, next := paging.Cut(page, ds, func(d domain.Deployment) paging.Cursor {
		return paging.Cursor{Time: sqldb.Nanos(d.CreatedAt), ID: d.ID}
	})
	return ds, next, nil
}

// checkList refuses a list a caller's token may not read: the list of a
// repository the token is not limited to, or a run's list when the run's
// release stage is of such a repository (release_runs holds the
// repository; a run's release and deployments are that repository's). A
// run without a release stage passes: it has no releases and no
// deployments, so its lists are empty. A list naming neither (the
// request's rules refuse it before) would be every repository's: only a
// token for every repository may read it.
func (s *Service) checkList(ctx context.Context, f ListFilter) error {
	if f.Repository == "" && f.RunID == "" {
		if _, limited := auth.Repositories(ctx); limited {
			return fmt.Errorf("a token limited to repositories must name a repository or a run: %w", apierror.ErrPermissionDenied)
		}
		return nil
	}
	if f.Repository != "" {
		if err := auth.CheckRepository(ctx, f.Repository); err != nil {
			return err
		}
	}
	if f.RunID == "" {
		return nil
	}
	run, err := s.store.stageRun(ctx, f.RunID)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		return nil
	case err != nil:
		return err
	}
	return auth.CheckRepository(ctx, run.Repository)
}

// Logs returns the lines of a release log from fromSeq on, only step's
// when step is set (a kind, "deploy", selects that kind in every
// environment), and the steps the log can be filtered by. id is a run's
// (its release stage's log) or a manual rollback's deployment id; anything
// else is not found. A caller whose token is limited to other
// repositories than the run's or the deployment's is refused (logSteps).
func (s *Service) Logs(ctx context.Context, id, step string, fromSeq int64, limit int) (steplog.Page, []string, error) {
	steps, err := s.logSteps(ctx, id)
	if err != nil {
		return steplog.Page{}, nil, err
	}
	if !isKind(step) {
		page, err := s.logs.Read(ctx, id, step, fromSeq, limit)
		return page, steps, err
	}
	for {
		page, err := s.logs.Read(ctx, id, "", fromSeq, limit)
		if err != nil {
			return steplog.Page{}, nil, err
		}
		all := len(page.Lines)
		page.Lines = slices.DeleteFunc(page.Lines, func(l steplog.Line) bool { return !domain.StepMatches(step, l.Step) })
		// A page whose lines were all of other steps is skipped, so that an
		// empty page still means "nothing more yet".
		if len(page.Lines) > 0 || page.Complete || all == 0 {
			return page, steps, nil
		}
		fromSeq = page.Next
	}
}

// TailLogs calls fn with a release log's lines from fromSeq on (only
// step's, as in Logs) as they are stored, until the log is complete or ctx
// ends. The first call has no lines: it says that the log exists and the
// caller may read it (a streaming caller answers then). A run without a
// release stage is not found: the stage starts only once the run's tests
// passed.
func (s *Service) TailLogs(ctx context.Context, id, step string, fromSeq int64, fn func([]steplog.Line) error) error {
	if _, err := s.logSteps(ctx, id); err != nil {
		return err
	}
	if err := fn(nil); err != nil {
		return err
	}
	if !isKind(step) {
		return s.logs.Tail(ctx, id, step, fromSeq, fn)
	}
	return s.logs.Tail(ctx, id, "", fromSeq, func(lines []steplog.Line) error {
		lines = slices.DeleteFunc(lines, func(l steplog.Line) bool { return !domain.StepMatches(step, l.Step) })
		if len(lines) == 0 {
			return nil
		}
		return fn(lines)
	})
}

// isKind reports whether a step filter names a kind of step (every
// environment's).
func isKind(step string) bool { return step != "" && !strings.Contains(step, ":") }

// logSteps returns the step names the release log of id (a run, or a
// manual rollback's deployment) can be filtered by: the kinds, and the
// steps of each environment id deployed to or rolled back. It refuses a
// caller whose token may not read the repository of the run's release
// stage or of the deployment (auth.CheckRepository), before reading
// anything else.
func (s *Service) logSteps(ctx context.Context, id string) ([]string, error) {
	var ds []domain.Deployment
	run, err := s.store.stageRun(ctx, id)
	switch {
	case err == nil:
		if err := auth.CheckRepository(ctx, run.Repository); err != nil {
			return nil, err
		}
		if ds, err = s.store.ListDeployments(ctx, ListFilter{RunID: id}, paging.Page{Size: paging.MaxSize}); err != nil {
			return nil, err
		}
		slices.Reverse(ds) // oldest first: the order they happened in
	case !errors.Is(err, apierror.ErrNotFound):
		return nil, err
	default:
		d, err := s.store.Deployment(ctx, id)
		switch {
		case errors.Is(err, apierror.ErrNotFound) || (err == nil && d.RunID != ""):
			return nil, fmt.Errorf("run %q has no release stage (it starts once the run's tests passed): %w", id, apierror.ErrNotFound)
		case err != nil:
			return nil, err
		}
		if err := auth.CheckRepository(ctx, d.Repository); err != nil {
			return nil, err
		}
		ds = []domain.Deployment{d}
	}
	steps := slices.Clone(domain.StepKinds)
	for _, d := range ds {
		kinds := []string{domain.StepDeploy, domain.StepVerify}
		if d.Rollback {
			kinds = []string{domain.StepRollback}
		}
		for _, k := range kinds {
			if step := domain.LogStep(k, d.Environment); !slices.Contains(steps, step) {
				steps = append(steps, step)
			}
		}
	}
	return steps, nil
}
