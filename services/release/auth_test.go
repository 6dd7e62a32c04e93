package release

import (
	"context"
	"errors"
	"testing"

	"connectrpc.com/connect"

	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
)

// clientWith is a client of the service that sends secret as its
// credential (servicekittest.IssueToken makes one).
func (h *harness) clientWith(secret string) releasev1connect.ReleaseServiceClient {
	return releasev1connect.NewReleaseServiceClient(h.proc.ClientWith(secret), h.proc.URL)
}

// tailLogs reads a TailLogs stream to its end and returns how many
// messages carried lines and how it ended.
func tailLogs(ctx context.Context, c releasev1connect.ReleaseServiceClient, id string) (int, error) {
	stream, err := c.TailLogs(ctx, &releasev1.TailLogsRequest{RunId: id})
	return servicekittest.CountMessages(stream, err, func(m *releasev1.TailLogsResponse) bool { return len(m.GetLines()) > 0 })
}

// A token limited to repositories reads the releases, deployments and
// release logs of those repositories only: ListReleases and
// ListDeployments naming another repository, or a run of one, and GetLogs
// and TailLogs of such a run or of a manual rollback's deployment answer
// permission_denied, TailLogs before any message. A token limited to the
// repository, and an admin token, read them.
func TestRepositoryLimitedTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	runID, _ := h.release(h.repo.CommitFiles("feat: greet", map[string]string{"greeting": "hi\n"}))
	ctx := t.Context()
	rb, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	rollbackID := rb.GetDeployment().GetId()

	own := h.clientWith(servicekittest.IssueToken(t, h.nats.URL, authv1.Role_ROLE_VIEWER, repoName))
	other := h.clientWith(servicekittest.IssueToken(t, h.nats.URL, authv1.Role_ROLE_VIEWER, "other", "more"))
	for _, c := range []releasev1connect.ReleaseServiceClient{own, other} {
		servicekittest.WaitKnown(t, func() error {
			_, err := c.ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: "other"})
			return err
		})
	}

	// Each procedure and what it answers with: how many items.
	calls := map[string]func(releasev1connect.ReleaseServiceClient) (int, error){
		"ListReleases(repository)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			res, err := c.ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: repoName})
			return len(res.GetReleases()), err
		},
		"ListReleases(run)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			res, err := c.ListReleases(ctx, &releasev1.ListReleasesRequest{RunId: runID})
			return len(res.GetReleases()), err
		},
		"ListDeployments(repository)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			res, err := c.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: repoName})
			return len(res.GetDeployments()), err
		},
		"ListDeployments(run)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			res, err := c.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{RunId: runID})
			return len(res.GetDeployments()), err
		},
		"GetLogs(run)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			res, err := c.GetLogs(ctx, &releasev1.GetLogsRequest{RunId: runID})
			return len(res.GetLines()), err
		},
		"GetLogs(rollback deployment)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			res, err := c.GetLogs(ctx, &releasev1.GetLogsRequest{RunId: rollbackID})
			return len(res.GetLines()), err
		},
		"TailLogs(run)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			return tailLogs(ctx, c, runID)
		},
		"TailLogs(rollback deployment)": func(c releasev1connect.ReleaseServiceClient) (int, error) {
			return tailLogs(ctx, c, rollbackID)
		},
	}
	for name, call := range calls {
		for who, c := range map[string]releasev1connect.ReleaseServiceClient{"token of app": own, "admin": h.client} {
			if n, err := call(c); err != nil || n == 0 {
				t.Errorf("%s: %s = %d items, %v; want the repository's", who, name, n, err)
			}
		}
		// Nothing comes before the refusal (for TailLogs: no message).
		if n, err := call(other); n != 0 || connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("token of other repositories: %s = %d items, %v; want permission_denied and nothing else", name, n, err)
		}
	}

	// The limited token lists its own repositories (nothing here), and a
	// run without a release stage has nothing to refuse.
	for _, req := range []*releasev1.ListReleasesRequest{{Repository: "other"}, {RunId: "no-such-run"}} {
		if res, err := other.ListReleases(ctx, req); err != nil || len(res.GetReleases()) != 0 {
			t.Errorf("token of other repositories: ListReleases(%v) = %v, %v; want none", req, res.GetReleases(), err)
		}
	}
}

// A list naming neither a repository nor a run (the request's rules refuse
// it before the service sees it) is every repository's: a limited token is
// refused it.
func TestListOfEveryRepositoryNeedsAnUnlimitedToken(t *testing.T) {
	t.Parallel()
	s := &Service{} // checkList reads nothing for such a list
	limited := auth.WithIdentity(t.Context(), auth.Identity{Kind: auth.KindUser, Role: authv1.Role_ROLE_VIEWER, Repositories: []string{repoName}})
	if err := s.checkList(limited, ListFilter{}); !errors.Is(err, apierror.ErrPermissionDenied) {
		t.Errorf("limited token: %v; want permission denied", err)
	}
	admin := auth.WithIdentity(t.Context(), auth.Identity{Kind: auth.KindUser, Role: authv1.Role_ROLE_ADMIN})
	if err := s.checkList(admin, ListFilter{}); err != nil {
		t.Errorf("admin token: %v; want none", err)
	}
}
