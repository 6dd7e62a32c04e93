package source

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
	"github.com/sluicehq/sluice/services/source/pipeline"
)

const (
	// maxPipelineSize bounds the pipeline file.
	maxPipelineSize = 1 << 20
	// fetchTimeout bounds one fetch of a mirror.
	fetchTimeout = 2 * time.Minute
	// defaultRunsLimit and defaultCommitsLimit apply when a request says 0.
	defaultRunsLimit    = 50
	defaultCommitsLimit = 1000
	// maxCommitMessage bounds the commit message kept with a run.
	maxCommitMessage = 4096
)

// Service is the source service's application layer: what the Connect
// handler, the webhook, the poller and the event consumers call.
type Service struct {
	cfg     Config
	store   *Store
	mirrors *gitmirror.Mirrors
	outbox  *events.Relay
	log     *slog.Logger
	changes *broadcast
}

// Deps are the service's collaborators; fx provides them (servicekit).
type Deps struct {
	fx.In
	Store *Store
	// Outbox publishes what the service enqueued; it is woken after every
	// commit that enqueued events.
	Outbox *events.Relay
	Log    *slog.Logger
}

// NewService makes the service; cfg must be valid (Config.WithDefaults,
// Config.Validate).
func NewService(cfg Config, d Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Outbox == nil || d.Log == nil {
		return nil, errors.New("source: NewService: every dependency is required")
	}
	return &Service{
		cfg:     cfg,
		store:   d.Store,
		mirrors: gitmirror.New(cfg.mirrorsDir()),
		outbox:  d.Outbox,
		log:     d.Log,
		changes: &broadcast{},
	}, nil
}

// broadcast wakes everyone waiting for a change of any run.
type broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel that is closed at the next notify.
func (b *broadcast) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *broadcast) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// --- repositories ---

// NewRepository is what CreateRepository needs; only URL is required.
type NewRepository struct {
	URL           string
	Name          string
	Branch        string
	WebhookSecret string
}

// CreateRepository registers a repository: it mirrors it, picks its name
// and branch, records its current head as seen (so history starts no run)
// and publishes RepositoryCreated. Registering the same URL under the same
// name again returns the existing repository with created false; the
// webhook secret is returned only when created.
func (s *Service) CreateRepository(ctx context.Context, in NewRepository) (repo domain.Repository, created bool, err error) {
	url, err := normalizeURL(in.URL)
	if err != nil {
		return repo, false, err
	}
	name := in.Name
	if name == "" {
		name = domain.NameFromURL(url)
		if name == "" {
			return repo, false, fmt.Errorf("name: cannot derive a repository name from url %q; set name: %w", url, apierror.ErrInvalidArgument)
		}
	}
	if !domain.ValidName(name) {
		return repo, false, fmt.Errorf("name %q: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit: %w", name, apierror.ErrInvalidArgument)
	}
	if existing, found, err := repositoryByName(ctx, s.store.db, name); err != nil {
		return repo, false, err
	} else if found {
		return sameRepository(existing, url, in.Branch)
	}

	id := ids.New()
	defer func() {
		if err != nil || !created {
			if rmErr := s.mirrors.Remove(id); rmErr != nil {
				s.log.Warn("could not remove the mirror of a repository that was not registered", slog.String("dir", s.mirrors.Dir(id)), slog.Any("error", rmErr))
			}
		}
	}()
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if err := s.mirrors.Fetch(fctx, id, url); err != nil {
		return repo, false, fmt.Errorf("url: %w: %w", err, apierror.ErrInvalidArgument)
	}
	branch := in.Branch
	if branch == "" {
		if branch, err = gitmirror.DefaultBranch(fctx, url); err != nil {
			return repo, false, fmt.Errorf("branch: %w: %w", err, apierror.ErrInvalidArgument)
		}
	} else if err := s.checkBranch(id, url, branch); err != nil {
		return repo, false, err
	}
	head, err := s.mirrors.BranchHead(id, branch)
	if err != nil && !errors.Is(err, gitmirror.ErrNotFound) {
		return repo, false, err
	}
	secret := in.WebhookSecret
	if secret == "" {
		secret = newSecret()
	}
	repo = domain.Repository{
		ID: id, Name: name, URL: url, Branch: branch, WebhookSecret: secret,
		LastSeenCommit: head, CreatedAt: time.Now().UTC(),
	}
	ev, err := events.New(&sourceeventsv1.RepositoryCreated{Repository: repositoryRef(repo), Branch: branch}, repo.ID, "")
	if err != nil {
		return repo, false, err
	}
	err = s.store.InTx(ctx, func(tx *sql.Tx) error {
		if err := insertRepository(ctx, tx, repo); err != nil {
			return err
		}
		return events.Enqueue(ctx, tx, ev)
	})
	if errors.Is(err, errNameTaken) {
		// Registered concurrently under the same name.
		existing, found, err := repositoryByName(ctx, s.store.db, name)
		if err != nil || !found {
			return repo, false, fmt.Errorf("repository %q: registered concurrently and then not found: %w", name, err)
		}
		return sameRepository(existing, url, in.Branch)
	}
	if err != nil {
		return repo, false, err
	}
	s.outbox.Kick()
	s.log.Info("repository registered", slog.String("repository", name), slog.String("url", url), slog.String("branch", branch))
	return repo, true, nil
}

// sameRepository answers a registration of a name that exists: the
// existing repository when it is the same, else ErrAlreadyExists.
func sameRepository(existing domain.Repository, url, branch string) (domain.Repository, bool, error) {
	switch {
	case existing.URL != url:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered with url %q: %w", existing.Name, existing.URL, apierror.ErrAlreadyExists)
	case branch != "" && branch != existing.Branch:
		return domain.Repository{}, false, fmt.Errorf("repository %q is already registered watching branch %q: %w", existing.Name, existing.Branch, apierror.ErrAlreadyExists)
	}
	existing.WebhookSecret = ""
	return existing, false, nil
}

func (s *Service) checkBranch(id, url, branch string) error {
	branches, err := s.mirrors.Branches(id)
	if err != nil {
		return err
	}
	if len(branches) == 0 {
		return nil // an empty repository: the branch may come
	}
	for _, b := range branches {
		if b == branch {
			return nil
		}
	}
	return fmt.Errorf("branch %q does not exist in %s (it has %s): %w", branch, url, strings.Join(branches, ", "), apierror.ErrInvalidArgument)
}

// normalizeURL makes a local path absolute and checks that url parses.
func normalizeURL(url string) (string, error) {
	url = strings.TrimSpace(url)
	if url == "" {
		return "", fmt.Errorf("url: a repository path or URL is required: %w", apierror.ErrInvalidArgument)
	}
	path, local, err := gitmirror.IsLocal(url)
	if err != nil {
		return "", fmt.Errorf("url %q: %w: %w", url, err, apierror.ErrInvalidArgument)
	}
	if !local || strings.HasPrefix(url, "file://") {
		return url, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("url %q: %w: %w", url, err, apierror.ErrInvalidArgument)
	}
	return abs, nil
}

func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// ListRepositories lists every repository, without webhook secrets.
func (s *Service) ListRepositories(ctx context.Context) ([]domain.Repository, error) {
	repos, err := s.store.Repositories(ctx)
	for i := range repos {
		repos[i].WebhookSecret = ""
	}
	return repos, err
}

// GetRepository finds a repository by name or id, without its secret.
func (s *Service) GetRepository(ctx context.Context, idOrName string) (domain.Repository, error) {
	repo, err := s.store.Repository(ctx, idOrName)
	repo.WebhookSecret = ""
	return repo, err
}

// fetch brings a repository's mirror up to date.
func (s *Service) fetch(ctx context.Context, repo domain.Repository) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if err := s.mirrors.Fetch(ctx, repo.ID, repo.URL); err != nil {
		return fmt.Errorf("repository %q: %w: %w", repo.Name, err, apierror.ErrUnavailable)
	}
	return nil
}

// --- runs ---

// TriggerRun starts a run for ref of a repository: a branch, a tag, a
// full or abbreviated commit sha, or (empty) the watched branch's head.
func (s *Service) TriggerRun(ctx context.Context, repository, ref string) (domain.Run, error) {
	if strings.ContainsAny(ref, " \t\n~^:?*[\\") || strings.Contains(ref, "..") {
		return domain.Run{}, fmt.Errorf("ref %q is not a valid branch, tag or commit name: %w", ref, apierror.ErrInvalidArgument)
	}
	repo, err := s.store.Repository(ctx, repository)
	if err != nil {
		return domain.Run{}, err
	}
	if err := s.fetch(ctx, repo); err != nil {
		return domain.Run{}, err
	}
	var res gitmirror.Resolved
	if ref == "" {
		head, err := s.mirrors.BranchHead(repo.ID, repo.Branch)
		if errors.Is(err, gitmirror.ErrNotFound) {
			return domain.Run{}, fmt.Errorf("ref: branch %q of repository %q has no commits: %w", repo.Branch, repo.Name, apierror.ErrNotFound)
		}
		if err != nil {
			return domain.Run{}, err
		}
		res = branchHead(repo.Branch, head)
	} else {
		res, err = s.mirrors.Resolve(repo.ID, ref)
		if errors.Is(err, gitmirror.ErrNotFound) {
			return domain.Run{}, fmt.Errorf("ref %q: no branch, tag or commit of repository %q has that name: %w", ref, repo.Name, apierror.ErrNotFound)
		}
		if err != nil {
			return domain.Run{}, err
		}
	}
	return s.startRun(ctx, repo, res, domain.TriggerManual, nil)
}

func branchHead(branch, commit string) gitmirror.Resolved {
	return gitmirror.Resolved{Commit: commit, Ref: "refs/heads/" + branch, Branch: branch}
}

// errSkipRun rolls back a run's transaction on purpose.
var errSkipRun = errors.New("run not needed")

// startRun creates a run of a resolved commit: it reads the pipeline file
// at the commit and records the run, queued with RunRequested when the file
// is valid, failed with RunFinished when it is missing or invalid. before
// runs first in the same transaction (to record how the change was
// noticed); returning errSkipRun from it makes no run.
func (s *Service) startRun(ctx context.Context, repo domain.Repository, res gitmirror.Resolved, trigger domain.Trigger,
	before func(tx *sql.Tx, run domain.Run) error,
) (domain.Run, error) {
	run, err := s.prepareRun(repo, res, trigger)
	if err != nil {
		return run, err
	}
	ev, err := runEvent(run)
	if err != nil {
		return run, err
	}
	err = s.store.InTx(ctx, func(tx *sql.Tx) error {
		if before != nil {
			if err := before(tx, run); err != nil {
				return err
			}
		}
		if err := insertRun(ctx, tx, run); err != nil {
			return err
		}
		return events.Enqueue(ctx, tx, ev)
	})
	if err != nil {
		return run, err
	}
	s.outbox.Kick()
	s.changes.notify()
	log := s.log.With(slog.String("run_id", run.ID), slog.String("repository", repo.Name), slog.String("commit", run.Commit), slog.String("trigger", string(trigger)))
	if run.Status == domain.RunFailed {
		log.Info("run failed at once: bad pipeline file", slog.String("reason", run.FailureReason))
	} else {
		log.Info("run requested")
	}
	run.Version = 1
	return run, nil
}

// prepareRun builds the run of a commit from its pipeline file.
func (s *Service) prepareRun(repo domain.Repository, res gitmirror.Resolved, trigger domain.Trigger) (domain.Run, error) {
	commit, err := s.mirrors.Commit(repo.ID, res.Commit)
	if err != nil {
		return domain.Run{}, err
	}
	if len(commit.Message) > maxCommitMessage {
		commit.Message = strings.ToValidUTF8(commit.Message[:maxCommitMessage], "")
	}
	id := ids.New()
	now := time.Now().UTC()
	data, err := s.mirrors.ReadFile(repo.ID, res.Commit, domain.PipelineFile, maxPipelineSize)
	switch {
	case errors.Is(err, gitmirror.ErrNotFound):
		return domain.NewFailedRun(id, repo, commit, res.Ref, res.Branch, trigger, domain.MissingPipelineReason(res.Commit), now), nil
	case errors.Is(err, gitmirror.ErrTooLarge):
		reason := fmt.Sprintf("%s: the file is larger than %d bytes", domain.PipelineFile, maxPipelineSize)
		return domain.NewFailedRun(id, repo, commit, res.Ref, res.Branch, trigger, reason, now), nil
	case err != nil:
		return domain.Run{}, err
	}
	p, err := pipeline.Parse(domain.PipelineFile, data)
	var bad *pipeline.Errors
	switch {
	case errors.As(err, &bad):
		return domain.NewFailedRun(id, repo, commit, res.Ref, res.Branch, trigger, bad.Error(), now), nil
	case err != nil:
		return domain.Run{}, fmt.Errorf("parse %s: %w", domain.PipelineFile, err)
	}
	return domain.NewRun(id, repo, commit, res.Ref, res.Branch, trigger, p, now), nil
}

// runEvent is the event a new run publishes: RunRequested, or RunFinished
// when it failed at once.
func runEvent(run domain.Run) (events.Event, error) {
	ref := &sourceeventsv1.RepositoryRef{Id: run.RepositoryID, Name: run.Repository, Url: run.RepositoryURL}
	if run.Status.Final() {
		return runFinishedEvent(run)
	}
	return events.New(&sourceeventsv1.RunRequested{
		RunId:         run.ID,
		Repository:    ref,
		Commit:        run.Commit,
		Ref:           run.Ref,
		Branch:        run.Branch,
		Trigger:       triggerToProto(run.Trigger),
		Pipeline:      run.Pipeline,
		CommitMessage: run.CommitMessage,
	}, run.ID, run.ID)
}

func runFinishedEvent(run domain.Run) (events.Event, error) {
	return events.New(&sourceeventsv1.RunFinished{
		RunId:          run.ID,
		Repository:     &sourceeventsv1.RepositoryRef{Id: run.RepositoryID, Name: run.Repository, Url: run.RepositoryURL},
		Commit:         run.Commit,
		Status:         runStatusToProto(run.Status),
		FailureReason:  run.FailureReason,
		ReleaseVersion: run.ReleaseVersion,
	}, run.ID, run.ID)
}

func changeReceivedEvent(repo domain.Repository, run domain.Run, trigger domain.Trigger, deliveryID string) (events.Event, error) {
	return events.New(&sourceeventsv1.ChangeReceived{
		Repository: repositoryRef(repo),
		Commit:     run.Commit,
		Ref:        run.Ref,
		Trigger:    triggerToProto(trigger),
		DeliveryId: deliveryID,
	}, run.Commit, run.ID)
}

func repositoryRef(r domain.Repository) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: r.ID, Name: r.Name, Url: r.URL}
}

// ListRuns lists runs newest first, of one repository (by name or id) or,
// when repository is empty, of all. limit 0 means 50.
func (s *Service) ListRuns(ctx context.Context, repository string, limit int) ([]domain.Run, error) {
	if limit <= 0 {
		limit = defaultRunsLimit
	}
	repoID := ""
	if repository != "" {
		repo, err := s.store.Repository(ctx, repository)
		if err != nil {
			return nil, err
		}
		repoID = repo.ID
	}
	return s.store.Runs(ctx, repoID, limit)
}

// GetRun reads one run.
func (s *Service) GetRun(ctx context.Context, id string) (domain.Run, error) {
	return s.store.Run(ctx, id)
}

// WatchRun sends the run now and again after every change until it ends,
// then returns. It wakes on every fold in this process and checks every
// second too (for changes made by another replica).
func (s *Service) WatchRun(ctx context.Context, id string, send func(domain.Run) error) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sent := int64(-1)
	for {
		wake := s.changes.wait()
		run, err := s.store.Run(ctx, id)
		if err != nil {
			return err
		}
		if run.Version != sent {
			if err := send(run); err != nil {
				return err
			}
			sent = run.Version
		}
		if run.Status.Final() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick.C:
		}
	}
}

// ListCommits lists the commits reachable from to and not from from (empty:
// from the root), newest first; limit 0 means 1000.
func (s *Service) ListCommits(ctx context.Context, repository, from, to string, limit int) ([]domain.Commit, error) {
	if limit <= 0 {
		limit = defaultCommitsLimit
	}
	repo, err := s.store.Repository(ctx, repository)
	if err != nil {
		return nil, err
	}
	commits, err := s.mirrors.Log(ctx, repo.ID, from, to, limit)
	if errors.Is(err, gitmirror.ErrNotFound) {
		// Perhaps newer than the mirror: fetch and look again.
		if err := s.fetch(ctx, repo); err != nil {
			return nil, err
		}
		commits, err = s.mirrors.Log(ctx, repo.ID, from, to, limit)
	}
	if errors.Is(err, gitmirror.ErrNotFound) {
		return nil, fmt.Errorf("repository %q: %w: %w", repo.Name, err, apierror.ErrNotFound)
	}
	return commits, err
}

// --- polling ---

// Poll fetches every repository now and then every Config.PollInterval
// until ctx ends, starting a run for each new head of a watched branch.
// With polling disabled it only waits for ctx.
func (s *Service) Poll(ctx context.Context) error {
	if s.cfg.PollInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.PollOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PollOnce fetches every repository once. Failures are logged and the
// next repository is polled.
func (s *Service) PollOnce(ctx context.Context) {
	repos, err := s.store.Repositories(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("poll: cannot list repositories", slog.Any("error", err))
		}
		return
	}
	for _, repo := range repos {
		if ctx.Err() != nil {
			return
		}
		if err := s.pollRepository(ctx, repo); err != nil && ctx.Err() == nil {
			s.log.Warn("poll failed", slog.String("repository", repo.Name), slog.Any("error", err))
		}
	}
}

func (s *Service) pollRepository(ctx context.Context, repo domain.Repository) error {
	if err := s.fetch(ctx, repo); err != nil {
		return err
	}
	head, err := s.mirrors.BranchHead(repo.ID, repo.Branch)
	if errors.Is(err, gitmirror.ErrNotFound) {
		return nil // no commits yet
	}
	if err != nil {
		return err
	}
	if head == repo.LastSeenCommit {
		return nil
	}
	_, err = s.startRun(ctx, repo, branchHead(repo.Branch, head), domain.TriggerPoll, func(tx *sql.Tx, run domain.Run) error {
		was := repo.LastSeenCommit
		ok, err := setLastSeen(ctx, tx, repo.ID, head, &was)
		if err != nil {
			return err
		}
		if !ok {
			return errSkipRun // a webhook saw it first
		}
		ev, err := changeReceivedEvent(repo, run, domain.TriggerPoll, "")
		if err != nil {
			return err
		}
		return events.Enqueue(ctx, tx, ev)
	})
	if errors.Is(err, errSkipRun) {
		return nil
	}
	return err
}

// --- webhooks ---

// PushResult says what a webhook push did.
type PushResult struct {
	// Outcome is "queued" (a run was made), "duplicate" (this delivery
	// made a run before), "ignored" or "seen" (the commit already has a
	// run).
	Outcome string
	RunID   string
	Reason  string
}

// zeroSHA is the "after" of a push that deleted a branch.
const zeroSHA = "0000000000000000000000000000000000000000"

// Push handles a push a webhook announced: to the watched branch, it
// fetches the mirror and starts a run (once per delivery id).
func (s *Service) Push(ctx context.Context, repo domain.Repository, deliveryID, ref, after string) (PushResult, error) {
	if runID, err := deliveryRun(ctx, s.store.db, repo.ID, deliveryID); err != nil {
		return PushResult{}, err
	} else if runID != "" {
		return PushResult{Outcome: "duplicate", RunID: runID, Reason: "duplicate delivery"}, nil
	}
	switch {
	case ref != "refs/heads/"+repo.Branch:
		return PushResult{Outcome: "ignored", Reason: fmt.Sprintf("push to %s, not to the watched branch %s", ref, repo.Branch)}, nil
	case after == zeroSHA:
		return PushResult{Outcome: "ignored", Reason: fmt.Sprintf("branch %s was deleted", repo.Branch)}, nil
	case after == repo.LastSeenCommit:
		return PushResult{Outcome: "seen", Reason: fmt.Sprintf("commit %s already has a run", after)}, nil
	}
	if err := s.fetch(ctx, repo); err != nil {
		return PushResult{}, err
	}
	if _, err := s.mirrors.Commit(repo.ID, after); err != nil {
		if errors.Is(err, gitmirror.ErrNotFound) {
			return PushResult{}, fmt.Errorf("after: commit %s is not in repository %q after fetching it: %w", after, repo.Name, apierror.ErrFailedPrecondition)
		}
		return PushResult{}, err
	}
	// A push to an ancestor of what was seen (an old delivery arriving
	// late) still gets its run, but does not move the branch back.
	older := false
	if repo.LastSeenCommit != "" {
		newer, err := s.mirrors.Log(ctx, repo.ID, repo.LastSeenCommit, after, 1)
		if err != nil {
			return PushResult{}, err
		}
		older = len(newer) == 0
	}
	run, err := s.startRun(ctx, repo, branchHead(repo.Branch, after), domain.TriggerWebhook, func(tx *sql.Tx, run domain.Run) error {
		if err := insertDelivery(ctx, tx, repo.ID, deliveryID, run.ID, run.CreatedAt); err != nil {
			return err
		}
		// Compare and set against what was read before the (slow) fetch:
		// a poll or another delivery that ran this commit meanwhile wins.
		cur, err := lastSeen(ctx, tx, repo.ID)
		if err != nil {
			return err
		}
		if cur == after {
			return errSkipRun
		}
		if !older {
			ok, err := setLastSeen(ctx, tx, repo.ID, after, &cur)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("repository %q changed while its push was handled; deliver it again: %w", repo.Name, apierror.ErrUnavailable)
			}
		}
		ev, err := changeReceivedEvent(repo, run, domain.TriggerWebhook, deliveryID)
		if err != nil {
			return err
		}
		return events.Enqueue(ctx, tx, ev)
	})
	if errors.Is(err, errDuplicateDelivery) {
		runID, err := deliveryRun(ctx, s.store.db, repo.ID, deliveryID)
		return PushResult{Outcome: "duplicate", RunID: runID, Reason: "duplicate delivery"}, err
	}
	if errors.Is(err, errSkipRun) {
		return PushResult{Outcome: "seen", Reason: fmt.Sprintf("commit %s already has a run", after)}, nil
	}
	if err != nil {
		return PushResult{}, err
	}
	return PushResult{Outcome: "queued", RunID: run.ID}, nil
}

// webhookRepository finds the repository a webhook URL names.
func (s *Service) webhookRepository(ctx context.Context, idOrName string) (domain.Repository, error) {
	return s.store.Repository(ctx, idOrName)
}
