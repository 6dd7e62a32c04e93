package source_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source"
)

// fakePulls is a GitHub Enterprise Server's list of open pull requests.
type fakePulls struct {
	mu   sync.Mutex
	body string
	auth string
}

func (f *fakePulls) set(body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.body = body
}

func (f *fakePulls) authorization() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.auth
}

func (f *fakePulls) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/api/v3/repos/acme/app/pulls" {
		http.NotFound(w, r)
		return
	}
	f.auth = r.Header.Get("Authorization")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(f.body))
}

// A pull request whose webhooks were all lost gets its run at the next
// poll, once; one closed while its webhook was lost has its runs
// cancelled.
func TestReconcileMissedPullRequests(t *testing.T) {
	t.Parallel()
	api := &fakePulls{body: "[]"}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	h := newHarness(t, 200*time.Millisecond, func(c *source.Config) {
		c.Keys.Text = newSecretKey(t)
		c.AllowEgress = append(c.AllowEgress, egress.Loopback)
	})
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	head := src.CommitFile("feature.txt", "1\n", "feature\n")
	src.SetRef("refs/pull/5/head", head)
	// The pull request's commit is not on main: main goes back one.
	src.SetRef("refs/heads/main", src.Commit("main again\n"))
	_, err := h.client.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{Url: src.Dir, ForgeToken: "ghp-reconcile-canary",
		Forge: &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITHUB, Url: srv.URL, Project: "acme/app"}})
	if err != nil {
		t.Fatal(err)
	}
	api.set(`[{"number":5,"title":"t","head":{"ref":"feature","sha":"` + head + `","repo":{"full_name":"acme/app"}},"base":{"ref":"main","repo":{"full_name":"acme/app"}}}]`)

	var runs []*sourcev1.Run
	servicekittest.Eventually(t, "the missed pull request has a run", func() bool {
		res, err := h.client.ListRuns(context.Background(), &sourcev1.ListRunsRequest{Repository: "app", PullRequest: 5})
		if err != nil {
			t.Fatal(err)
		}
		runs = res.GetRuns()
		return len(runs) > 0
	})
	if r := runs[0]; r.GetCommit() != head || r.GetTrigger() != sourcev1.Trigger_TRIGGER_PULL_REQUEST || r.GetBranch() != "pull/5" {
		t.Errorf("reconciled run %+v", r)
	}
	if auth := api.authorization(); auth != "Bearer ghp-reconcile-canary" {
		t.Errorf("the forge was asked with %q", auth)
	}
	time.Sleep(600 * time.Millisecond) // more polls: still one run
	res, _ := h.client.ListRuns(context.Background(), &sourcev1.ListRunsRequest{Repository: "app", PullRequest: 5})
	if len(res.GetRuns()) != 1 {
		t.Errorf("%d runs of #5 after more polls, want 1", len(res.GetRuns()))
	}

	api.set("[]")
	servicekittest.Eventually(t, "the closed pull request's run is cancelled", func() bool {
		run := h.getRun(runs[0].Id)
		return strings.Contains(run.GetCancelRequestedBy(), "pull request #5 was closed") || run.GetStatus() == sourcev1.RunStatus_RUN_STATUS_CANCELLED
	})
	if strings.Contains(h.logs.String(), "ghp-reconcile-canary") {
		t.Error("the forge token is in the log")
	}
}
