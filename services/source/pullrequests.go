package source

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/services/source/domain"
	"github.com/sluicehq/sluice/services/source/gitmirror"
)

// The pull request use case: a pull (merge) request that is opened,
// reopened or pushed to starts a run of its head commit, once per
// delivery and once per commit; one that is closed (merged or not) has
// its runs that have not ended cancelled.
//
// Such a run is on branch pull/<number>, with ref refs/pull/<number>/head
// (GitLab: refs/merge-requests/<number>/head), trigger pull_request (the
// `event` its conditions see), and its pipeline's release section removed:
// a pull request never releases or deploys. It gets secrets only when the
// repository allows it for pull requests from its own branches, and never
// when its head is in a fork (ResolveSecrets).

// pullRequestHeadRef matches the refs the forges keep pull request heads
// under.
var pullRequestHeadRef = regexp.MustCompile(`^refs/(pull|merge-requests)/[0-9]+/head$`)

// PullRequestBranch is the branch a pull request's runs are on: their
// concurrency group, commit de-duplication and caches are the pull
// request's own.
func PullRequestBranch(number int64) string { return fmt.Sprintf("pull/%d", number) }

// pullRequestRef is the ref a forge keeps a pull request's head under.
func pullRequestRef(kind forge.Kind, number int64) string {
	if kind == forge.GitLab {
		return fmt.Sprintf("refs/merge-requests/%d/head", number)
	}
	return fmt.Sprintf("refs/pull/%d/head", number)
}

// PullRequest handles a pull request event of forge kind.
func (s *Service) PullRequest(ctx context.Context, repo domain.Repository, kind forge.Kind, deliveryID string, pr forge.PullRequest) (PushResult, error) {
	if res, seen, err := s.delivered(ctx, repo, deliveryID); seen || err != nil {
		return res, err
	}
	switch pr.Action {
	case forge.PullRequestClosed:
		return s.closePullRequest(ctx, repo, pr.Number)
	case forge.PullRequestOpened, forge.PullRequestUpdated, forge.PullRequestReopened:
	default:
		return PushResult{Outcome: "ignored", Reason: fmt.Sprintf("pull request #%d: nothing to run for this change", pr.Number)}, nil
	}
	if pr.FromFork && !repo.ForkPullRequests {
		return PushResult{Outcome: "ignored", Reason: fmt.Sprintf("pull request #%d is from a fork, and repository %q does not run those: "+
			"their commands would run on its build hosts (sluice repo add --fork-pull-requests)", pr.Number, repo.Name)}, nil
	}
	branch := PullRequestBranch(pr.Number)
	if runID, err := s.store.CommitRun(ctx, repo.ID, branch, pr.HeadSHA); err == nil {
		return PushResult{Outcome: "duplicate commit", RunID: runID,
			Reason: fmt.Sprintf("commit %s already has run %s on pull request #%d", pr.HeadSHA, runID, pr.Number)}, nil
	} else if !errors.Is(err, apierror.ErrNotFound) {
		return PushResult{}, err
	}
	ref := pullRequestRef(kind, pr.Number)
	if err := s.fetchPullRequest(ctx, repo, ref); err != nil {
		return PushResult{}, err
	}
	if _, err := s.mirrors.Commit(repo.ID, pr.HeadSHA); err != nil {
		if errors.Is(err, gitmirror.ErrNotFound) {
			return PushResult{}, fmt.Errorf("pull_request.head.sha: commit %s is not in repository %q after fetching it: %w", pr.HeadSHA, repo.Name, apierror.ErrFailedPrecondition)
		}
		return PushResult{}, err
	}
	res := gitmirror.Resolved{Commit: pr.HeadSHA, Ref: ref, Branch: branch}
	run, err := s.startRun(ctx, repo, res, domain.TriggerPullRequest, func(tx *sql.Tx, run domain.Run) error {
		return recordDelivery(ctx, tx, repo, run, domain.TriggerPullRequest, deliveryID, nil)
	}, func(r *domain.Run) { r.AsPullRequest(pr.Number, pr.FromFork) })
	if errors.Is(err, errDuplicateDelivery) {
		runID, err := s.store.DeliveryRun(ctx, repo.ID, deliveryID)
		return PushResult{Outcome: "duplicate", RunID: runID, Reason: "duplicate delivery"}, err
	}
	if existing := new(existingRun); errors.As(err, &existing) {
		return PushResult{Outcome: "duplicate commit", RunID: existing.RunID,
			Reason: fmt.Sprintf("commit %s already has run %s on pull request #%d", pr.HeadSHA, existing.RunID, pr.Number)}, nil
	}
	if err != nil {
		return PushResult{}, err
	}
	s.log.Info("pull request run", slog.String("repository", repo.Name), slog.Int64("pull_request", pr.Number),
		slog.Bool("from_fork", pr.FromFork), slog.String("run_id", run.ID), slog.String("commit", run.Commit))
	return PushResult{Outcome: "queued", RunID: run.ID}, nil
}

// fetchPullRequest brings the repository's branches and the pull
// request's head (ref) into its mirror.
func (s *Service) fetchPullRequest(ctx context.Context, repo domain.Repository, ref string) error {
	if err := s.fetch(ctx, repo); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	cred, err := s.repositoryCredential(ctx, repo)
	if err != nil {
		return err
	}
	err = s.mirrors.FetchRef(ctx, repo.ID, repo.URL, cred, ref)
	switch {
	case errors.Is(err, gitmirror.ErrNotFound):
		return fmt.Errorf("repository %q has no %s: %w", repo.Name, ref, apierror.ErrFailedPrecondition)
	case err != nil:
		return fmt.Errorf("repository %q: %s: %w: %w", repo.Name, ref, egress.Brief(err), apierror.ErrUnavailable)
	}
	return nil
}

// closePullRequest cancels the runs of a closed pull request that have
// not ended, and forgets its commits (a reopened pull request runs its
// head again) and its head in the mirror.
func (s *Service) closePullRequest(ctx context.Context, repo domain.Repository, number int64) (PushResult, error) {
	by := fmt.Sprintf("pull request #%d was closed", number)
	var cancelled []string
	err := s.store.InTx(ctx, func(tx *sql.Tx) error {
		cancelled = nil
		if _, err := tx.ExecContext(ctx, `DELETE FROM branch_commits WHERE repository_id = $1 AND branch = $2`, repo.ID, PullRequestBranch(number)); err != nil {
			return fmt.Errorf("forget the commits of pull request #%d: %w", number, err)
		}
		ids, err := openPullRequestRuns(ctx, tx, repo.ID, number)
		if err != nil {
			return err
		}
		for _, id := range ids {
			run, err := lockRun(ctx, tx, id)
			if err != nil {
				return err
			}
			if run.Status.Final() {
				continue
			}
			if err := cancel(ctx, tx, &run, by); err != nil {
				return err
			}
			cancelled = append(cancelled, id)
		}
		return nil
	})
	if err != nil {
		return PushResult{}, err
	}
	for _, kind := range []forge.Kind{forge.GitHub, forge.GitLab} {
		if err := s.mirrors.RemoveRef(repo.ID, pullRequestRef(kind, number)); err != nil {
			s.log.Warn("could not remove a closed pull request's head from the mirror", slog.String("repository", repo.Name), slog.Any("error", err))
		}
	}
	if len(cancelled) == 0 {
		return PushResult{Outcome: "ignored", Reason: by + "; none of its runs was still going"}, nil
	}
	s.outbox.Kick()
	s.changes.notify()
	s.wakeAdmission()
	s.log.Info("pull request closed: its runs cancelled", slog.String("repository", repo.Name), slog.Int64("pull_request", number), slog.Any("runs", cancelled))
	return PushResult{Outcome: "cancelled", RunID: cancelled[0], Reason: fmt.Sprintf("%s; cancelled %d run(s)", by, len(cancelled))}, nil
}

// openPullRequestRuns lists the runs of a pull request that have not
// ended.
func openPullRequestRuns(ctx context.Context, tx *sql.Tx, repoID string, number int64) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM runs WHERE repository_id = $1 AND pull_request = $2 AND status IN ($3, $4) ORDER BY created_at`,
		repoID, number, string(domain.RunQueued), string(domain.RunRunning))
	if err != nil {
		return nil, fmt.Errorf("list the runs of pull request #%d: %w", number, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list the runs of pull request #%d: %w", number, err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
