package release

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/services/release/domain"
)

// Versions follow commit ancestry, and nothing older replaces something
// newer automatically. Runs finish out of order (an older commit's tests
// may pass after a newer commit was released), so release asks source how
// commits relate: ListCommits from b to a with a page of one is empty
// exactly when a is an ancestor of b (or b itself).

// maxAncestryChecks bounds the releases a new release is placed among (the
// newest ones, by version).
const maxAncestryChecks = 100

// isAncestor reports whether commit a is an ancestor of commit b, or b.
// A commit source does not know (gone from the repository) is nobody's
// ancestor.
func (s *Service) isAncestor(ctx context.Context, repository, a, b string) (bool, error) {
	if a == b {
		return true, nil
	}
	res, err := s.source.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: repository, From: b, To: a, PageSize: 1})
	switch {
	case connect.CodeOf(err) == connect.CodeNotFound:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("ask source whether %s is an ancestor of %s in %s: %w", domain.ShortSHA(a), domain.ShortSHA(b), repository, err)
	}
	return len(res.GetCommits()) == 0, nil
}

// placeCommit finds where a commit that has no release stands among the
// repository's releases: the newest release whose commit is an ancestor of
// it (base; nil when there is none), or, when it is itself an ancestor of
// a release's commit, why it gets no version (older). Under the rule that
// versions follow ancestry, the releases below the first ancestor found
// (by version) are its ancestors or unrelated, so the search stops there.
func (s *Service) placeCommit(ctx context.Context, repository, commit string) (base *ReleasedCommit, older string, err error) {
	rels, err := s.store.ReleasedCommits(ctx, repository, maxAncestryChecks)
	if err != nil {
		return nil, "", err
	}
	for _, r := range rels {
		if ok, err := s.isAncestor(ctx, repository, r.Commit, commit); err != nil {
			return nil, "", err
		} else if ok {
			return &r, "", nil
		}
		if ok, err := s.isAncestor(ctx, repository, commit, r.Commit); err != nil {
			return nil, "", err
		} else if ok {
			return nil, fmt.Sprintf("commit %s is older than release %s (commit %s), which contains it: no version is made for it and nothing is deployed",
				domain.ShortSHA(commit), r.Version, domain.ShortSHA(r.Commit)), nil
		}
	}
	return nil, "", nil
}

// freeVersion is v, unless a release on another line of history (a
// force-push, another release branch) has it: then the version after the
// highest release by the same commits, so that versions stay unique.
func (s *Service) freeVersion(ctx context.Context, repository string, v domain.Version, commits []domain.Commit) (domain.Version, error) {
	_, err := s.store.ReleaseByVersion(ctx, repository, v)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		return v, nil
	case err != nil:
		return domain.Version{}, err
	}
	latest, err := s.store.LatestRelease(ctx, repository)
	if err != nil {
		return domain.Version{}, err
	}
	return latest.Version.Apply(domain.BumpFor(commits)), nil
}

// tagVersion is the version of a release made from a tag that names one
// (v): v itself, unless it would break the rules every version keeps, and
// then why the tag's run is not released: v must be above the version of
// base, the newest release of an ancestor (versions follow ancestry), and
// no other release may have it.
func (s *Service) tagVersion(ctx context.Context, repository, tag string, v domain.Version, base *ReleasedCommit) (domain.Version, string, error) {
	if base != nil && v.Compare(base.Version) <= 0 {
		return domain.Version{}, fmt.Sprintf("tag %s: version %s is not above %s, the release of commit %s, which it contains",
			tag, v, base.Version, domain.ShortSHA(base.Commit)), nil
	}
	other, err := s.store.ReleaseByVersion(ctx, repository, v)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		return v, "", nil
	case err != nil:
		return domain.Version{}, "", err
	}
	return domain.Version{}, fmt.Sprintf("tag %s: version %s is released already, of commit %s", tag, v, domain.ShortSHA(other.Commit)), nil
}

// alreadyThere says, under env's lock, whether env runs rel's commit
// already or a newer one (a release whose commit contains it): then rel is
// not deployed there automatically, and reason says why. newer is true
// when what runs there is newer than rel. With since (a deployment of rel
// there interrupted, made then), a deployment verified there after since
// counts as newer too: a rollback, by hand or of another run, once the
// interrupted one's lock lapsed. A manual rollback is not asked: putting
// an older release back is what it is for.
func (s *Service) alreadyThere(ctx context.Context, st stage, rel domain.Release, env string, since time.Time) (reason string, newer bool, err error) {
	cur, err := s.store.CurrentDeployment(ctx, st.repo.Name, env)
	switch {
	case errors.Is(err, apierror.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	running, err := s.releaseOf(ctx, cur)
	if err != nil {
		return "", false, err
	}
	if running.Commit == rel.Commit {
		return fmt.Sprintf("%s already runs %s", env, running.Version), false, nil
	}
	older, err := s.isAncestor(ctx, st.repo.Name, rel.Commit, running.Commit)
	switch {
	case err != nil:
		return "", false, err
	case !older && !since.IsZero() && cur.CreatedAt.After(since):
		what := "a deployment"
		if cur.Rollback {
			what = "a rollback"
		}
		// The environments after env are left too: rel was not verified here.
		return fmt.Sprintf("%s got %s since, by %s (%s)", env, cur.Version, what, cur.ID), true, nil
	case !older:
		return "", false, nil
	}
	return fmt.Sprintf("%s runs %s (commit %s), which contains %s (commit %s)",
		env, running.Version, domain.ShortSHA(running.Commit), rel.Version, domain.ShortSHA(rel.Commit)), true, nil
}
