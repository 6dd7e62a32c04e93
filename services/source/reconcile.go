package source

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/services/source/domain"
)

// Reconciliation: a webhook can be lost (Sluice down, a forge's hiccup,
// a delivery that gave up). At every poll of a repository on a forge with
// a token, source asks the forge for its open pull requests and compares
// them with what it has seen: an open pull request whose head has no run
// gets one (as its webhook would have made it), and a pull request that is
// no longer open has its runs that have not ended cancelled. The watched
// branch is reconciled by the poll itself. Replicas may reconcile at once:
// the runs' de-duplication (per pull request and commit) makes one run.

// forgeTimeout bounds one call to a forge's API.
const forgeTimeout = 30 * time.Second

// reconcilePullRequests reconciles repo's pull requests with its forge;
// a repository without a forge or a forge token has nothing to do.
func (s *Service) reconcilePullRequests(ctx context.Context, repo domain.Repository) error {
	if repo.Forge.IsZero() || !repo.HasForgeToken || s.keys == nil {
		return nil
	}
	token, err := s.credentialValue(ctx, repo.ID, repo.Name, forge.TokenSecret)
	if err != nil || token == "" {
		return err
	}
	client, err := forge.NewClient(repo.Forge, token, s.forgeHTTP)
	if err != nil {
		return err
	}
	open, err := client.OpenPullRequests(ctx)
	if err != nil {
		return err
	}
	isOpen := map[int64]bool{}
	for _, pr := range open {
		isOpen[pr.Number] = true
		// The delivery id is the pull request's head: a second pass, or a
		// webhook that came after all, makes no second run.
		delivery := fmt.Sprintf("reconcile:%d:%s", pr.Number, pr.HeadSHA)
		res, err := s.PullRequest(ctx, repo, repo.Forge.Kind, delivery, pr)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			s.log.Warn("reconcile: a pull request could not be run", slog.String("repository", repo.Name), slog.Int64("pull_request", pr.Number), slog.Any("error", err))
			continue
		}
		if res.Outcome == "queued" {
			s.log.Info("reconcile: a pull request missed by its webhooks got its run", slog.String("repository", repo.Name),
				slog.Int64("pull_request", pr.Number), slog.String("commit", pr.HeadSHA), slog.String("run_id", res.RunID))
		}
	}
	if len(open) >= forge.MaxOpenPullRequests {
		return nil // the list may be cut: close nothing it may have left out
	}
	going, err := s.store.OpenPullRequestNumbers(ctx, repo.ID)
	if err != nil {
		return err
	}
	for _, number := range going {
		if isOpen[number] {
			continue
		}
		res, err := s.closePullRequest(ctx, repo, number)
		if err != nil {
			return err
		}
		if res.Outcome == "cancelled" {
			s.log.Info("reconcile: a pull request closed while its webhook was missed had its runs cancelled", slog.String("repository", repo.Name), slog.Int64("pull_request", number))
		}
	}
	return nil
}
