package source

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/paging"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
	"github.com/sluicehq/sluice/services/source/pipeline"
)

const (
	// maxCommitMessage bounds the commit message kept with a run.
	maxCommitMessage = 4096
	// maxCommitsSkipped bounds how far into a range of commits a
	// ListCommits page token may point: every page walks the history up to
	// its start, so a forged token must not make one walk the whole of it.
	maxCommitsSkipped = 100_000
)

// TriggerRun starts a run for ref of a repository: a branch, a tag, a
// full or abbreviated commit sha, or (empty) the watched branch's head.
// It always makes a new run, also of a commit that has one: running a
// commit again by hand is what it is for. The run is recorded as the
// commit's on its branch, so neither the poll nor a push makes another.
func (s *Service) TriggerRun(ctx context.Context, repository, ref string) (domain.Run, error) {
	if strings.ContainsAny(ref, " \t\n~^:?*[\\") || strings.Contains(ref, "..") {
		return domain.Run{}, fmt.Errorf("ref %q is not a valid branch, tag or commit name: %w", ref, apierror.ErrInvalidArgument)
	}
	repo, err := s.callersRepository(ctx, repository)
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
		if err == nil && pullRequestHeadRef.MatchString(res.Ref) {
			// A pull request's head is run as the pull request's (its
			// webhook, or the reconciliation), never as an ordinary run
			// with secrets and a release.
			return domain.Run{}, fmt.Errorf("ref %q is a pull request's head: it runs when the pull request is opened or pushed to, or by sluice rerun of its run: %w", ref, apierror.ErrInvalidArgument)
		}
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

// existingRun is startRun's error when a push or the poll brought a commit
// that already has a run on its branch: no run was made, RunID is that one.
type existingRun struct{ RunID string }

func (e *existingRun) Error() string { return "the commit already has run " + e.RunID }

// unwantedRun is startRun's error when the pipeline's on: section starts
// no run for a push (domain.Unwanted): Reason says why.
type unwantedRun struct{ Reason string }

func (e *unwantedRun) Error() string { return "no run: " + e.Reason }

// unwanted says why a push or the poll makes no run of run (prepared by
// prepareRun), "" when it does: its pipelines' on: sections, the run
// holding those of its pipelines that want it (narrow). Pipeline files
// that are missing or invalid have no rules to go by: the repository's
// branch gets its failed run, to say so; other branches and tags get none.
func unwanted(repo domain.Repository, run *domain.Run, based bool) (string, error) {
	if run.Status == domain.RunFailed {
		if run.Branch == repo.Branch {
			return "", nil
		}
		return fmt.Sprintf("%s: its on: section is not known: %s", cmp.Or(run.Branch, run.Ref), run.FailureReason), nil
	}
	changes := run.Changes
	if !based {
		// The first run of a branch: its push may have brought more
		// commits than its head's, which the changes do not show.
		changes = nil
	}
	return narrow(run, func(n domain.NamedPipeline) string {
		return domain.Unwanted(n.Pipeline, repo.Branch, run.Ref, run.Branch, changes)
	})
}

// startRun creates a run of a resolved commit: it reads the pipeline file
// at the commit and records the run, queued with RunRequested when the file
// is valid, failed with RunFinished when it is missing or invalid.
//
// One rule holds for every trigger: a commit has at most one run per
// branch made by a push or the poll. For those triggers a commit that has
// a run (made by any trigger) gets none, and the error is an *existingRun
// naming it; the database decides, in the transaction that records the
// run (recordBranchCommit), so replicas and racing triggers make one. A
// manual trigger always makes a run. before runs next in the same
// transaction (to record how the change was noticed); returning errSkipRun
// from it makes no run.
func (s *Service) startRun(ctx context.Context, repo domain.Repository, res gitmirror.Resolved, trigger domain.Trigger,
	before func(tx *sql.Tx, run domain.Run) error, tune ...func(*domain.Run),
) (domain.Run, error) {
	// A manual trigger runs a commit again, and so does a schedule: a
	// nightly run of an unchanged branch is what it is for.
	again := trigger == domain.TriggerManual || trigger == domain.TriggerSchedule
	if !again {
		// Most duplicates end here, before the pipeline file is read.
		if runID, err := s.store.CommitRun(ctx, repo.ID, domain.CommitKey(res.Branch, res.Ref), res.Commit); err == nil {
			return domain.Run{}, &existingRun{RunID: runID}
		} else if !errors.Is(err, apierror.ErrNotFound) {
			return domain.Run{}, err
		}
	}
	run, err := s.prepareRun(repo, res, trigger)
	if err != nil {
		return run, err
	}
	for _, f := range tune {
		f(&run)
	}
	based := false // the changes are since the branch's last run
	if run.Changes == nil {
		seen := "" // what the repository's branch was seen at, when its last run is older
		if run.Branch == repo.Branch {
			seen = repo.LastSeenCommit
		}
		run.Changes, based = s.changesOf(ctx, run, seen)
	}
	if trigger == domain.TriggerWebhook || trigger == domain.TriggerPoll {
		reason, err := unwanted(repo, &run, based)
		if err != nil {
			return domain.Run{}, err
		}
		if reason != "" {
			return domain.Run{}, &unwantedRun{Reason: reason}
		}
	}
	var superseded []string
	made := run // as the transaction leaves it (set afresh on each try)
	err = s.record(ctx, func(tx *sql.Tx) error {
		superseded, made = nil, run
		if err := recordBranchCommit(ctx, tx, run, again); err != nil {
			return err
		}
		if before != nil {
			if err := before(tx, run); err != nil {
				return err
			}
		}
		if err := insertRun(ctx, tx, run); err != nil {
			return err
		}
		// A manual trigger's call is recorded with its run; the poller and
		// webhooks are no call (Record does nothing for them).
		if err := audit.Record(ctx, tx, audit.Target{Repository: repo.Name, ID: run.ID}); err != nil {
			return err
		}
		if run.Status.Final() {
			// It failed at once: nothing to wait for.
			ev, err := events.New(runFinishedToProto(run), run.ID, run.ID)
			if err != nil {
				return err
			}
			return events.Enqueue(ctx, tx, ev)
		}
		// It waits for the admission pass (admission.go), which publishes
		// its RunRequested.
		if !run.Pipeline.GetConcurrency().GetCancelSuperseded() {
			return nil
		}
		var err error
		superseded, err = supersede(ctx, tx, &made)
		return err
	})
	if errors.Is(err, errAlreadyRun) {
		runID, err := s.store.CommitRun(ctx, repo.ID, domain.CommitKey(res.Branch, res.Ref), res.Commit)
		if err != nil {
			return domain.Run{}, fmt.Errorf("commit %s had a run and then none: %w", res.Commit, err)
		}
		return domain.Run{}, &existingRun{RunID: runID}
	}
	if err != nil {
		return run, err
	}
	s.outbox.Kick()
	s.changes.notify()
	log := s.log.With(slog.String("run_id", run.ID), slog.String("repository", repo.Name), slog.String("commit", run.Commit), slog.String("trigger", string(trigger)))
	switch {
	case run.Status == domain.RunFailed:
		log.Info("run failed at once: bad pipeline file", slog.String("reason", run.FailureReason))
	case made.Status == domain.RunCancelled:
		log.Info("run superseded as it was made: a newer run of its concurrency group was made first", slog.String("reason", made.FailureReason))
		return s.store.Run(ctx, run.ID)
	default:
		s.wakeAdmission()
		log.Info("run made; it starts once admitted", slog.String("concurrency_group", run.ConcurrencyGroup))
	}
	for _, id := range superseded {
		log.Info("the run supersedes an older run of its concurrency group: cancelling that one", slog.String("superseded_run_id", id))
	}
	run.Version = 1
	return run, nil
}

// record runs fn, which records a new run, in a transaction, one at a
// time in this process (Service.recording).
func (s *Service) record(ctx context.Context, fn func(tx *sql.Tx) error) error {
	s.recording.Lock()
	defer s.recording.Unlock()
	return s.store.InTx(ctx, fn)
}

// prepareRun builds the run of a commit from its pipeline file. A file
// that is missing, too large or invalid (pipeline.Parse: its own checks,
// then the rules of pipeline.proto) makes a failed run saying why.
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
	named, failure, err := s.pipelinesAt(repo.ID, res.Commit)
	if err != nil {
		return domain.Run{}, err
	}
	if failure != "" {
		return domain.NewFailedRun(id, repo, commit, res.Ref, res.Branch, trigger, failure, now), nil
	}
	p, err := pipeline.Merge(named)
	var bad *pipeline.Errors
	switch {
	case errors.As(err, &bad):
		return domain.NewFailedRun(id, repo, commit, res.Ref, res.Branch, trigger, bad.Error(), now), nil
	case err != nil:
		return domain.Run{}, fmt.Errorf("merge the pipelines: %w", err)
	}
	run := domain.NewRun(id, repo, commit, res.Ref, res.Branch, trigger, p, now)
	run.Pipelines = named
	run.Holds = domain.NamesOf(named)
	return run, nil
}

// pipelinesAt reads the pipeline files of a commit in the repository's
// mirror: .sluice.yaml and .sluice/*.yaml (pipeline.ParseFiles). failure
// says why there is no run to make of them (none there, one too large or
// invalid, too many), err that the mirror could not be read.
func (s *Service) pipelinesAt(repoID, commit string) (named []domain.NamedPipeline, failure string, err error) {
	limits := s.cfg.pipelineLimits()
	tooLarge := func(file string) string {
		return fmt.Sprintf("%s: the file is larger than %d bytes (hint: the source service's max-pipeline-size setting sets the limit)", file, limits.MaxSize)
	}
	var files []pipeline.Source
	data, err := s.mirrors.ReadFile(repoID, commit, domain.PipelineFile, int64(limits.MaxSize))
	switch {
	case errors.Is(err, gitmirror.ErrTooLarge):
		return nil, tooLarge(domain.PipelineFile), nil
	case err == nil:
		files = append(files, pipeline.Source{Path: domain.PipelineFile, Data: data})
	case !errors.Is(err, gitmirror.ErrNotFound):
		return nil, "", err
	}
	more, err := s.mirrors.ReadDir(repoID, commit, domain.PipelineDir, domain.PipelineSuffix, pipeline.MaxFiles, int64(limits.MaxSize))
	switch {
	case errors.Is(err, gitmirror.ErrTooMany):
		return nil, fmt.Sprintf("%s: more than %d pipeline files (*%s); at most %d", domain.PipelineDir, pipeline.MaxFiles, domain.PipelineSuffix, pipeline.MaxFiles), nil
	case err != nil:
		return nil, "", err
	}
	for _, f := range more {
		switch {
		case f.Symlink:
			return nil, fmt.Sprintf("%s: a symbolic link; a pipeline file must be a file", f.Path), nil
		case f.TooLarge:
			return nil, tooLarge(f.Path), nil
		}
		files = append(files, pipeline.Source{Path: f.Path, Data: f.Data})
	}
	if len(files) == 0 {
		return nil, domain.MissingPipelineReason(commit), nil
	}
	named, err = pipeline.ParseFiles(files, limits)
	var bad *pipeline.Errors
	switch {
	case errors.As(err, &bad):
		return nil, bad.Error(), nil
	case err != nil:
		return nil, "", fmt.Errorf("parse the pipeline files: %w", err)
	}
	return named, "", nil
}

// narrow keeps those of run's pipelines that want it (why says why one
// does not, "" when it does): the run's pipeline becomes theirs merged. It
// says why none does, and then leaves the run as it is.
func narrow(run *domain.Run, why func(domain.NamedPipeline) string) (string, error) {
	if len(run.Pipelines) == 0 {
		return "", nil // a failed run, or one read back
	}
	var wanted []domain.NamedPipeline
	var reasons []string
	for _, n := range run.Pipelines {
		reason := why(n)
		if reason == "" {
			wanted = append(wanted, n)
			continue
		}
		if len(run.Pipelines) > 1 || n.Name != "" {
			reason = n.Path + ": " + reason
		}
		reasons = append(reasons, reason)
	}
	if len(wanted) == 0 {
		return strings.Join(reasons, "; "), nil
	}
	if len(wanted) == len(run.Pipelines) {
		return "", nil
	}
	p, err := pipeline.Merge(wanted)
	if err != nil {
		// Not a problem of the files: all of them merged.
		return "", fmt.Errorf("merge the pipelines run %s holds: %w", run.ID, err)
	}
	// What is the whole run's is .sluice.yaml's, whether its pipeline is
	// one of the run's or not.
	p.Concurrency, p.Statuses, p.On = run.Pipeline.GetConcurrency(), run.Pipeline.GetStatuses(), run.Pipeline.GetOn()
	run.Pipeline, run.Pipelines, run.Holds = p, wanted, domain.NamesOf(wanted)
	return "", nil
}

// maxChangedPaths bounds the changed paths a run's event carries.
const maxChangedPaths = 1000

// changesOf lists what run's commit changed, when its pipeline asks
// (changed(), on.push.paths): against the commit of the branch's last run
// when that is an ancestor, else (and for a tag) against the commit's
// first parent. Not knowing is no error: the run goes on without them
// (changed() is then true, and on.push.paths lets the push run). For the
// repository's branch without a run, the base is seen, the commit it was
// seen at. based says the changes are since such a base: on.push.paths
// filters only those (the first push of another branch runs).
func (s *Service) changesOf(ctx context.Context, run domain.Run, seen string) (changes *sourcev1.Changes, based bool) {
	if !callsChanged(run) {
		return nil, false
	}
	base, err := "", error(nil)
	if run.Branch != "" { // a tag's changes are its commit's
		base, err = s.store.LastBranchCommit(ctx, run.RepositoryID, run.Branch)
	}
	if err != nil && !errors.Is(err, apierror.ErrNotFound) {
		s.log.Warn("reading the branch's last run failed; the run's changes are taken from its commit's parent", slog.String("run_id", run.ID), slog.Any("error", err))
	}
	if base == "" {
		base = seen
	}
	paths, complete, err := s.mirrors.Changes(ctx, run.RepositoryID, base, run.Commit, maxChangedPaths)
	if err != nil {
		s.log.Warn("listing the run's changed paths failed; changed() is true for its steps", slog.String("run_id", run.ID), slog.Any("error", err))
		return &sourcev1.Changes{}, false
	}
	return &sourcev1.Changes{Paths: paths, Complete: complete}, base != ""
}

// callsChanged says run needs its changes: the on.push.paths of one of
// its pipelines filters pushes, or a step has a condition that may call
// changed().
func callsChanged(run domain.Run) bool {
	if len(run.Pipeline.GetOn().GetPush().GetPaths()) > 0 {
		return true
	}
	for _, n := range run.Pipelines {
		if len(n.Pipeline.GetOn().GetPush().GetPaths()) > 0 {
			return true
		}
	}
	p := run.Pipeline
	for _, st := range append(p.GetBuild().GetSteps(), p.GetTest().GetSteps()...) {
		if strings.Contains(st.GetWhen(), "changed") {
			return true
		}
	}
	return false
}

// supersede cancels, in tx, the open runs of run's concurrency group made
// before it, and returns their ids. Should a newer open run of the group
// be recorded already (two runs made at once: the newer committed first,
// before this one was there to be cancelled), run itself is superseded:
// it ends cancelled before it started.
func supersede(ctx context.Context, tx *sql.Tx, run *domain.Run) ([]string, error) {
	newer, err := newerOpenRuns(ctx, tx, run.RepositoryID, run.ConcurrencyGroup, *run)
	if err != nil {
		return nil, err
	}
	for _, n := range newer {
		if domain.HoldsAllOf(n.Holds, run.Holds) {
			return nil, cancel(ctx, tx, run, supersededBy(n.ID, run.ConcurrencyGroup))
		}
	}
	older, err := supersededRuns(ctx, tx, run.RepositoryID, run.ConcurrencyGroup, *run)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, o := range older {
		// A run of other pipelines (a push only docs' pipeline wants,
		// after one to src/) leaves the older run's work to it.
		if !domain.HoldsAllOf(run.Holds, o.Holds) {
			continue
		}
		old, err := lockRun(ctx, tx, o.ID)
		if err != nil {
			return nil, err
		}
		if err := cancel(ctx, tx, &old, supersededBy(run.ID, run.ConcurrencyGroup)); err != nil {
			return nil, err
		}
		ids = append(ids, o.ID)
	}
	return ids, nil
}

// storeEnd stores, in tx, run that source itself has just ended, and
// enqueues its RunFinished.
func storeEnd(ctx context.Context, tx *sql.Tx, run *domain.Run) error {
	if err := updateRun(ctx, tx, *run); err != nil {
		return err
	}
	run.Version++
	fin, err := events.New(runFinishedToProto(*run), run.ID, run.ID)
	if err != nil {
		return err
	}
	return events.Enqueue(ctx, tx, fin)
}

// supersededBy names who cancels a run that run newer of group supersedes.
func supersededBy(newer, group string) string {
	return fmt.Sprintf("run %s (a newer run of %s)", newer, group)
}

// cancel asks, in tx, for run (locked, not ended) to be cancelled by by. A
// run still waiting to start ends cancelled at once, with RunFinished; an
// admitted one records the request, the first time, and publishes
// RunCancelRequested (again when asked again, under the first asker's
// name: a stage that could not record it, its database down past the
// consumer's redeliveries, gets another chance). The stages then stop the
// run's steps and end cancelled, which the fold makes the run's end.
func cancel(ctx context.Context, tx *sql.Tx, run *domain.Run, by string) error {
	now := time.Now().UTC()
	if run.CancelRequestedAt.IsZero() {
		run.CancelRequestedAt, run.CancelRequestedBy = now, by
		if err := requestCancel(ctx, tx, *run); err != nil {
			return err
		}
		run.Version++
	}
	if run.CancelWaiting(run.CancelRequestedBy, now) {
		return storeEnd(ctx, tx, run)
	}
	ev, err := events.New(&sourceeventsv1.RunCancelRequested{
		RunId: run.ID, Repository: runRepositoryRef(*run), Commit: run.Commit, RequestedBy: run.CancelRequestedBy,
	}, run.ID, run.ID)
	if err != nil {
		return err
	}
	return events.Enqueue(ctx, tx, ev)
}

// ListRuns lists one page of runs, newest first, of one repository (by
// name or id) or, when repository is empty, of all, and the token of the
// page after ("" on the last); with pullRequest, only that pull request's.
func (s *Service) ListRuns(ctx context.Context, repository string, pullRequest int64, page paging.Page) ([]domain.Run, string, error) {
	repoID := ""
	if repository != "" {
		repo, err := s.callersRepository(ctx, repository)
		if err != nil {
			return nil, "", err
		}
		repoID = repo.ID
	}
	runs, err := s.store.Runs(ctx, repoID, pullRequest, page)
	if err != nil {
		return nil, "", err
	}
	runs, next := paging.Cut(page, runs, func(r domain.Run) paging.Cursor {
		return paging.Cursor{Time: r.CreatedAt.UnixNano(), ID: r.ID}
	})
	return runs, next, nil
}

// GetRun reads one run.
func (s *Service) GetRun(ctx context.Context, runID string) (domain.Run, error) {
	run, err := s.store.Run(ctx, runID)
	if err != nil {
		return domain.Run{}, err
	}
	if err := auth.CheckRepository(ctx, run.Repository); err != nil {
		return domain.Run{}, err
	}
	return run, nil
}

// RerunRun starts a new run of an ended run's commit (its ref and branch,
// its pipeline file read again). With failed, the new run starts at the
// first stage of the ended run that failed or was cancelled, and the
// stages before reuse what the ended run made: build its artifacts, test
// its test run (RunRequested.rerun_from). A run that has not ended is
// refused (cancel it first), and so is failed for a run that succeeded.
func (s *Service) RerunRun(ctx context.Context, runID string, failed bool) (domain.Run, error) {
	old, err := s.store.Run(ctx, runID)
	if err != nil {
		return domain.Run{}, err
	}
	if err := auth.CheckRepository(ctx, old.Repository); err != nil {
		return domain.Run{}, err
	}
	if !old.Status.Final() {
		return domain.Run{}, fmt.Errorf("run %s is %s: it can be run again once it ended (sluice cancel ends it): %w", old.ID, old.Status, apierror.ErrFailedPrecondition)
	}
	from := domain.StageBuild
	if failed {
		if old.Status == domain.RunSucceeded {
			return domain.Run{}, fmt.Errorf("run %s succeeded: no stage failed (a rerun without failed runs every stage): %w", old.ID, apierror.ErrFailedPrecondition)
		}
		from = old.RerunStage()
	}
	repo, err := s.store.Repository(ctx, old.RepositoryID)
	if err != nil {
		return domain.Run{}, err
	}
	if err := s.fetch(ctx, repo); err != nil {
		return domain.Run{}, err
	}
	// The call's audit entry names the run it reruns (the first Record
	// of a call is the one kept).
	named := func(tx *sql.Tx, _ domain.Run) error {
		return audit.Record(ctx, tx, audit.Target{Repository: old.Repository, ID: old.ID})
	}
	// Manual, so that the commit gets its run whatever ran it before; the
	// steps' conditions see what the ended run's saw: its trigger and the
	// paths its commits changed.
	run, err := s.startRun(ctx, repo, gitmirror.Resolved{Commit: old.Commit, Ref: old.Ref, Branch: old.Branch}, domain.TriggerManual, named,
		func(r *domain.Run) {
			r.RerunOf, r.RerunFrom = old.ID, from
			r.Trigger, r.Changes = old.Trigger, old.Changes
			if old.Holds != nil {
				// The pipelines the run held (a rerun of the failed
				// stages reuses what they made before).
				reason, err := narrow(r, func(n domain.NamedPipeline) string {
					if slices.Contains(old.Holds, n.Name) {
						return ""
					}
					return "not one of run " + old.ID + "'s"
				})
				if err != nil || reason != "" {
					s.log.Warn("the rerun holds every pipeline: those of its run are not at its commit", slog.String("rerun_of", old.ID),
						slog.String("reason", reason), slog.Any("error", err))
				}
			}
			if old.PullRequest > 0 {
				// Still the pull request's: no release, no secrets it
				// would not get.
				r.AsPullRequest(old.PullRequest, old.PullRequestFromFork)
			}
		})
	if err != nil {
		return domain.Run{}, err
	}
	s.log.Info("run rerun", slog.String("run_id", run.ID), slog.String("rerun_of", old.ID), slog.String("from", from))
	return run, nil
}

// CancelRun records that the caller asks for run runID to be cancelled
// and publishes RunCancelRequested with it: the stages stop the run's
// steps, start nothing more of it, and end cancelled, which the fold
// makes the run's end (RunFinished). Asking again publishes the request
// again and changes nothing else; a run that ended is refused.
//
// With force, an admitted run ends cancelled at once too, without waiting
// for its stages (domain.Run.ForceCancel), which are still asked to stop:
// for a run no stage answers for.
func (s *Service) CancelRun(ctx context.Context, runID string, force bool) (domain.Run, error) {
	by := "an unknown caller"
	if id, ok := auth.FromContext(ctx); ok {
		by = id.String()
	}
	var run domain.Run
	requested := false
	err := s.store.InTx(ctx, func(tx *sql.Tx) error {
		var err error
		requested = false
		run, err = lockRun(ctx, tx, runID)
		if err != nil {
			return err
		}
		if err := auth.CheckRepository(ctx, run.Repository); err != nil {
			return err
		}
		if run.Status.Final() {
			return fmt.Errorf("run %s already ended (%s): %w", run.ID, run.Status, apierror.ErrFailedPrecondition)
		}
		if err := audit.Record(ctx, tx, audit.Target{Repository: run.Repository, ID: run.ID}); err != nil {
			return err
		}
		requested = true
		if err := cancel(ctx, tx, &run, by); err != nil {
			return err
		}
		if !force || !run.ForceCancel(run.CancelRequestedBy, time.Now().UTC()) {
			return nil
		}
		return storeEnd(ctx, tx, &run)
	})
	if err != nil {
		return domain.Run{}, err
	}
	if requested {
		s.outbox.Kick()
		s.changes.notify()
		s.wakeAdmission()
		switch {
		case force && run.Status.Final():
			s.log.Info("run cancelled, forced: its stages not waited for", slog.String("run_id", run.ID), slog.String("by", by))
		case run.Status.Final():
			s.log.Info("run cancelled before it started", slog.String("run_id", run.ID), slog.String("by", by))
		default:
			s.log.Info("run cancel requested", slog.String("run_id", run.ID), slog.String("by", by), slog.String("first_by", run.CancelRequestedBy))
		}
	}
	return run, nil
}

// WatchRun sends the run now and again after every change until it ends,
// then returns. It wakes on every fold in this process and checks every
// second too (for changes made by another replica).
func (s *Service) WatchRun(ctx context.Context, runID string, send func(domain.Run) error) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sent := int64(-1)
	for {
		wake := s.changes.wait()
		run, err := s.store.Run(ctx, runID)
		if err != nil {
			return err
		}
		if err := auth.CheckRepository(ctx, run.Repository); err != nil {
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

// ListCommits lists one page of the commits reachable from to and not from
// from (empty: from the root), newest first, and the token of the page
// after ("" on the last). The range never changes (commits are immutable),
// so a token is the number of commits listed before and the last of them,
// which the next page checks.
func (s *Service) ListCommits(ctx context.Context, repository, from, to string, page paging.Page) ([]domain.Commit, string, error) {
	skip := 0
	if page.After != nil {
		if page.After.Time < 1 || page.After.Time > maxCommitsSkipped {
			return nil, "", errBadCommitsToken
		}
		skip = int(page.After.Time)
	}
	repo, err := s.callersRepository(ctx, repository)
	if err != nil {
		return nil, "", err
	}
	commits, err := s.mirrors.Log(ctx, repo.ID, from, to, skip+page.Limit())
	if errors.Is(err, gitmirror.ErrNotFound) {
		// Perhaps newer than the mirror: fetch and look again.
		if err := s.fetch(ctx, repo); err != nil {
			return nil, "", err
		}
		commits, err = s.mirrors.Log(ctx, repo.ID, from, to, skip+page.Limit())
	}
	if errors.Is(err, gitmirror.ErrNotFound) {
		return nil, "", fmt.Errorf("repository %q: %w: %w", repo.Name, err, apierror.ErrNotFound)
	}
	if err != nil {
		return nil, "", err
	}
	if skip > 0 {
		if len(commits) < skip || commits[skip-1].SHA != page.After.ID {
			return nil, "", errBadCommitsToken
		}
		commits = commits[skip:]
	}
	// A next page follows only a full one: page.Size commits more are listed.
	commits, next := paging.Cut(page, commits, func(c domain.Commit) paging.Cursor {
		return paging.Cursor{Time: int64(skip + page.Size), ID: c.SHA}
	})
	return commits, next, nil
}

// errBadCommitsToken refuses a ListCommits page token that is not one of
// the same range.
var errBadCommitsToken = fmt.Errorf("%w: page_token is not a token of this range of commits (pass the next_page_token of the page before, with the same repository, from and to)", apierror.ErrInvalidArgument)
