package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
	"unicode/utf8"

	"code.gitea.io/sdk/gitea"
	"github.com/google/go-github/v84/github"
	gitlab "gitlab.com/gitlab-org/api/client-go/v2"
)

// State is a commit status's state, in Sluice's terms; each forge's
// client maps it to the forge's own (GitHub and Gitea have no "running"
// and no "cancelled": they get pending and error).
type State string

// The states of a commit status.
const (
	StatePending   State = "pending"
	StateRunning   State = "running"
	StateSuccess   State = "success"
	StateFailure   State = "failure"
	StateError     State = "error"
	StateCancelled State = "cancelled"
)

// Status is one commit status: a context (one per run, "sluice", or one
// per stage, "sluice/build") and what it says.
type Status struct {
	Context     string
	State       State
	Description string
	TargetURL   string
}

// MaxDescription is the longest description GitHub takes, in characters;
// Description is cut to it.
const MaxDescription = 140

// ErrRejected marks a request the forge refused as wrong (400, 422):
// sending it again cannot help. Other errors (the forge down, a token
// refused, a repository not found yet) may pass, and are retried.
var ErrRejected = errors.New("the forge rejected the request")

// Client reports to one repository on its forge, and reads what the
// reconciliation compares with what Sluice has seen.
type Client interface {
	// SetStatus sets the status of commit sha in st.Context.
	SetStatus(ctx context.Context, sha string, st Status) error
	// OpenPullRequests lists the open pull (merge) requests with their
	// heads, newest first, at most MaxOpenPullRequests.
	OpenPullRequests(ctx context.Context) ([]PullRequest, error)
	// CreateRelease makes rel, and its tag when there is none; a release
	// of the tag that is there already counts as made. A tag at another
	// commit than rel's is rejected (ErrRejected), and nothing made.
	CreateRelease(ctx context.Context, rel Release) error
}

// NewClient is a client of repo's forge API that sends token, through
// httpClient (whose transport enforces the egress policy).
func NewClient(repo Repo, token string, httpClient *http.Client) (Client, error) {
	if err := repo.Validate(); err != nil {
		return nil, err
	}
	if repo.IsZero() {
		return nil, fmt.Errorf("the repository has no forge: %w", ErrInvalid)
	}
	if token == "" {
		return nil, fmt.Errorf("the repository has no forge token (the secret %s): %w", TokenSecret, ErrInvalid)
	}
	base := strings.TrimSuffix(repo.URL, "/")
	switch repo.Kind {
	case GitHub:
		c := github.NewClient(httpClient).WithAuthToken(token)
		if u, _ := neturl.Parse(base); u.Host != "github.com" {
			var err error
			if c, err = c.WithEnterpriseURLs(base+"/api/v3/", base+"/api/uploads/"); err != nil {
				return nil, fmt.Errorf("forge.url: %w: %w", err, ErrInvalid)
			}
		}
		return &githubClient{c: c, repo: repo}, nil
	case Gitea:
		return &giteaClient{base: base, token: token, http: httpClient, repo: repo}, nil
	case GitLab:
		c, err := gitlab.NewClient(token, gitlab.WithBaseURL(base+"/api/v4"), gitlab.WithHTTPClient(httpClient), gitlab.WithoutRetries())
		if err != nil {
			return nil, fmt.Errorf("forge.url: %w: %w", err, ErrInvalid)
		}
		return &gitlabClient{c: c, repo: repo}, nil
	}
	return nil, fmt.Errorf("forge %q: %w", repo.Kind, ErrInvalid)
}

// describe cuts a description to MaxDescription characters, on a rune.
func describe(s string) string {
	if utf8.RuneCountInString(s) <= MaxDescription {
		return s
	}
	r := []rune(s)
	return string(r[:MaxDescription-1]) + "…"
}

// classify wraps err of an API call that answered code: ErrRejected for a
// request the forge called wrong.
func classify(what string, code int, err error) error {
	if code == http.StatusBadRequest || code == http.StatusUnprocessableEntity {
		return fmt.Errorf("%s: %w: %w", what, err, ErrRejected)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// githubState maps a state to GitHub's (and Gitea's) four.
func githubState(s State) string {
	switch s {
	case StateSuccess:
		return "success"
	case StateFailure:
		return "failure"
	case StateError, StateCancelled:
		return "error"
	}
	return "pending"
}

type githubClient struct {
	c    *github.Client
	repo Repo
}

func (g *githubClient) SetStatus(ctx context.Context, sha string, st Status) error {
	_, res, err := g.c.Repositories.CreateStatus(ctx, g.repo.Owner(), g.repo.Name(), sha, github.RepoStatus{
		State:       github.Ptr(githubState(st.State)),
		Context:     github.Ptr(st.Context),
		Description: github.Ptr(describe(st.Description)),
		TargetURL:   nonEmpty(st.TargetURL),
	})
	if err != nil {
		return classify("github: set the commit status", statusOf(res), err)
	}
	return nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// giteaClient makes a Gitea SDK client per call: the SDK takes its
// context per client, not per call.
type giteaClient struct {
	base, token string
	http        *http.Client
	repo        Repo
}

func (g *giteaClient) client(ctx context.Context) (*gitea.Client, error) {
	c, err := gitea.NewClient(g.base, gitea.SetToken(g.token), gitea.SetHTTPClient(g.http), gitea.SetContext(ctx),
		gitea.SetGiteaVersion(""), gitea.SetUserAgent("Sluice"))
	if err != nil {
		return nil, fmt.Errorf("forge.url: %w: %w", err, ErrInvalid)
	}
	return c, nil
}

func (g *giteaClient) SetStatus(ctx context.Context, sha string, st Status) error {
	c, err := g.client(ctx)
	if err != nil {
		return err
	}
	_, res, err := c.CreateStatus(g.repo.Owner(), g.repo.Name(), sha, gitea.CreateStatusOption{
		State:       gitea.StatusState(githubState(st.State)),
		Context:     st.Context,
		Description: describe(st.Description),
		TargetURL:   st.TargetURL,
	})
	if err != nil {
		return classify("gitea: set the commit status", giteaCode(res), err)
	}
	return nil
}

type gitlabClient struct {
	c    *gitlab.Client
	repo Repo
}

func gitlabState(s State) gitlab.BuildStateValue {
	switch s {
	case StateRunning:
		return gitlab.Running
	case StateSuccess:
		return gitlab.Success
	case StateFailure, StateError:
		return gitlab.Failed
	case StateCancelled:
		return gitlab.Canceled
	}
	return gitlab.Pending
}

func (g *gitlabClient) SetStatus(ctx context.Context, sha string, st Status) error {
	_, _, err := g.c.Commits.SetCommitStatus(g.repo.Project, sha, &gitlab.SetCommitStatusOptions{
		State:       gitlabState(st.State),
		Name:        gitlab.Ptr(st.Context),
		Description: gitlab.Ptr(describe(st.Description)),
		TargetURL:   nonEmpty(st.TargetURL),
	}, gitlab.WithContext(ctx))
	if er := new(gitlab.ErrorResponse); errors.As(err, &er) {
		// GitLab refuses to set a state a status already has ("Cannot
		// transition status via :run from :running"): what was asked for
		// holds, as after a retry of a request whose answer was lost.
		if er.StatusCode == http.StatusBadRequest && strings.Contains(er.Message, "Cannot transition status") {
			return nil
		}
		return classify("gitlab: set the commit status", er.StatusCode, err)
	}
	if err != nil {
		return fmt.Errorf("gitlab: set the commit status: %w", err)
	}
	return nil
}
