package forge

import (
	"context"
	"strings"

	"code.gitea.io/sdk/gitea"
	"github.com/google/go-github/v84/github"
	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// MaxOpenPullRequests bounds what OpenPullRequests reads: a repository
// with more open pull requests is read up to it, newest first on every
// forge (the reconciliation then covers those).
const MaxOpenPullRequests = 1000

// openPage is how many pull requests a page asks for.
const openPage = 50

// OpenPullRequests lists the repository's open pull (merge) requests with
// their heads (Action is PullRequestOpened), newest first, at most
// MaxOpenPullRequests.
func (g *githubClient) OpenPullRequests(ctx context.Context) ([]PullRequest, error) {
	var out []PullRequest
	opt := &github.PullRequestListOptions{State: "open", Sort: "created", Direction: "desc", ListOptions: github.ListOptions{PerPage: openPage}}
	for len(out) < MaxOpenPullRequests {
		prs, res, err := g.c.PullRequests.List(ctx, g.repo.Owner(), g.repo.Name(), opt)
		if err != nil {
			return out, classify("github: list the open pull requests", statusOf(res), err)
		}
		for _, pr := range prs {
			out = append(out, PullRequest{
				Number: int64(pr.GetNumber()), Action: PullRequestOpened, Title: pr.GetTitle(),
				HeadSHA: pr.GetHead().GetSHA(), HeadRef: pr.GetHead().GetRef(), BaseRef: pr.GetBase().GetRef(),
				FromFork: pr.GetHead().GetRepo() == nil || !strings.EqualFold(pr.GetHead().GetRepo().GetFullName(), pr.GetBase().GetRepo().GetFullName()),
			})
		}
		if res.NextPage == 0 {
			break
		}
		opt.Page = res.NextPage
	}
	return capped(out), nil
}

// statusOf, giteaCode and gitlabCode are the HTTP status of a client's
// answer, 0 without one.
func statusOf(res *github.Response) int {
	if res == nil || res.Response == nil {
		return 0
	}
	return res.StatusCode
}

func giteaCode(res *gitea.Response) int {
	if res == nil || res.Response == nil {
		return 0
	}
	return res.StatusCode
}

func gitlabCode(res *gitlab.Response) int {
	if res == nil || res.Response == nil {
		return 0
	}
	return res.StatusCode
}

func (g *giteaClient) OpenPullRequests(ctx context.Context) ([]PullRequest, error) {
	c, err := g.client(ctx)
	if err != nil {
		return nil, err
	}
	var out []PullRequest
	for page := 1; len(out) < MaxOpenPullRequests; page++ {
		prs, res, err := c.ListRepoPullRequests(g.repo.Owner(), g.repo.Name(), gitea.ListPullRequestsOptions{
			ListOptions: gitea.ListOptions{Page: page, PageSize: openPage}, State: gitea.StateOpen, Sort: "recentupdate"})
		if err != nil {
			return out, classify("gitea: list the open pull requests", giteaCode(res), err)
		}
		for _, pr := range prs {
			if pr.Head == nil || pr.Base == nil {
				continue
			}
			fork := pr.Head.Repository == nil || pr.Base.Repository == nil || pr.Head.RepoID != pr.Base.RepoID
			out = append(out, PullRequest{
				Number: pr.Index, Action: PullRequestOpened, Title: pr.Title,
				HeadSHA: pr.Head.Sha, HeadRef: pr.Head.Ref, BaseRef: pr.Base.Ref, FromFork: fork,
			})
		}
		if len(prs) < openPage {
			break
		}
	}
	return capped(out), nil
}

func (g *gitlabClient) OpenPullRequests(ctx context.Context) ([]PullRequest, error) {
	var out []PullRequest
	opt := &gitlab.ListProjectMergeRequestsOptions{State: gitlab.Ptr("opened"), ListOptions: gitlab.ListOptions{PerPage: openPage, Page: 1}}
	for len(out) < MaxOpenPullRequests {
		mrs, res, err := g.c.MergeRequests.ListProjectMergeRequests(g.repo.Project, opt, gitlab.WithContext(ctx))
		if err != nil {
			return out, classify("gitlab: list the open merge requests", gitlabCode(res), err)
		}
		for _, mr := range mrs {
			out = append(out, PullRequest{
				Number: mr.IID, Action: PullRequestOpened, Title: mr.Title,
				HeadSHA: mr.SHA, HeadRef: mr.SourceBranch, BaseRef: mr.TargetBranch, FromFork: mr.SourceProjectID != mr.TargetProjectID,
			})
		}
		if res.NextPage == 0 {
			break
		}
		opt.Page = res.NextPage
	}
	return capped(out), nil
}

// capped keeps the first MaxOpenPullRequests, and only those whose head is
// a full sha (a forge that has not computed it yet: the next pass).
func capped(prs []PullRequest) []PullRequest {
	out := prs[:0]
	for _, pr := range prs {
		if fullSHA.MatchString(pr.HeadSHA) && pr.Number > 0 && len(out) < MaxOpenPullRequests {
			out = append(out, pr)
		}
	}
	return out
}
