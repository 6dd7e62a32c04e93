package source_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/paging/pagingtest"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// TestListsPage pages through every list of the API with page_size and
// page_token: each item comes exactly once, in the list's order, and the
// last page has no next_page_token. The older limit still works.
func TestListsPage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	ctx := context.Background()

	// Repositories, in name order.
	var names []string
	var app string
	for i := range 5 {
		src, _ := newGitRepo(t, fmt.Sprintf("repo-%d", 4-i), "main", validPipeline)
		repo := h.register(src.Dir)
		names = append([]string{repo.Name}, names...)
		if i == 0 {
			app = repo.Name
		}
	}
	gotRepos := pagingtest.All(t, 2, func(token string) ([]string, string) {
		res, err := h.client.ListRepositories(ctx, &sourcev1.ListRepositoriesRequest{PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatalf("ListRepositories: %v", err)
		}
		var keys []string
		for _, r := range res.Repositories {
			if r.WebhookSecret != "" {
				t.Errorf("ListRepositories shows %s's webhook secret", r.Name)
			}
			keys = append(keys, r.Name)
		}
		return keys, res.NextPageToken
	})
	if strings.Join(gotRepos, ",") != strings.Join(names, ",") {
		t.Errorf("repositories %v, want %v", gotRepos, names)
	}

	// Runs, newest first, of all repositories or of one.
	var runs []string
	for i := range 7 {
		repo := app
		if i%2 == 1 {
			repo = names[0]
		}
		runs = append([]string{h.trigger(repo, "").Id}, runs...)
	}
	listRuns := func(repository string, size int32) []string {
		return pagingtest.All(t, int(size), func(token string) ([]string, string) {
			res, err := h.client.ListRuns(ctx, &sourcev1.ListRunsRequest{Repository: repository, PageSize: size, PageToken: token})
			if err != nil {
				t.Fatalf("ListRuns: %v", err)
			}
			var keys []string
			for _, r := range res.Runs {
				keys = append(keys, r.Id)
			}
			return keys, res.NextPageToken
		})
	}
	if got := listRuns("", 3); strings.Join(got, ",") != strings.Join(runs, ",") {
		t.Errorf("runs %v, want %v (newest first)", got, runs)
	}
	var appRuns []string
	for i, id := range runs {
		if i%2 == 0 { // runs is newest first: the even ones are app's
			appRuns = append(appRuns, id)
		}
	}
	if got := listRuns(app, 2); strings.Join(got, ",") != strings.Join(appRuns, ",") {
		t.Errorf("runs of %s %v, want %v", app, got, appRuns)
	}
	res, err := h.client.ListRuns(ctx, &sourcev1.ListRunsRequest{Limit: 2})
	if err != nil || len(res.Runs) != 2 || res.Runs[0].Id != runs[0] || res.NextPageToken == "" {
		t.Errorf("ListRuns with limit 2: %v, %v; want the 2 newest and a next page", res, err)
	}

	// Commits, newest first.
	src, first := newGitRepo(t, "history", "main", validPipeline)
	commits := []string{first}
	for i := range 6 {
		commits = append([]string{src.CommitFile("f", fmt.Sprint(i), fmt.Sprintf("commit %d\n", i))}, commits...)
	}
	h.register(src.Dir)
	listCommits := func(from string) func(token string) ([]string, string) {
		return func(token string) ([]string, string) {
			res, err := h.client.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: "history", From: from, To: commits[0], PageSize: 2, PageToken: token})
			if err != nil {
				t.Fatalf("ListCommits: %v", err)
			}
			var keys []string
			for _, c := range res.Commits {
				keys = append(keys, c.Sha)
			}
			return keys, res.NextPageToken
		}
	}
	if got := pagingtest.All(t, 2, listCommits("")); strings.Join(got, ",") != strings.Join(commits, ",") {
		t.Errorf("commits %v, want %v", got, commits)
	}
	if got := pagingtest.All(t, 2, listCommits(commits[4])); strings.Join(got, ",") != strings.Join(commits[:4], ",") {
		t.Errorf("commits after %s: %v, want %v", commits[4], got, commits[:4])
	}
	// The older limit may still ask for more than a page_size can.
	all, err := h.client.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: "history", To: commits[0], Limit: 10000})
	if err != nil || len(all.Commits) != len(commits) || all.NextPageToken != "" {
		t.Errorf("ListCommits with limit 10000: %v, %v", all, err)
	}

	// A token of another list, or of another range, is refused.
	_, next := listCommits("")("")
	_, err = h.client.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: "history", To: commits[1], PageSize: 2, PageToken: next})
	if connectCode(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "page_token") {
		t.Errorf("a token of another range: %v, want invalid_argument naming page_token", err)
	}
	for _, bad := range []string{"nonsense", strings.Repeat("x", 1025)} {
		_, err = h.client.ListRuns(ctx, &sourcev1.ListRunsRequest{PageToken: bad})
		if connectCode(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "page_token") {
			t.Errorf("token %.10q: %v, want invalid_argument naming page_token", bad, err)
		}
	}
	_, err = h.client.ListRepositories(ctx, &sourcev1.ListRepositoriesRequest{PageSize: 1001})
	if connectCode(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "page_size") {
		t.Errorf("page_size 1001: %v, want invalid_argument naming page_size", err)
	}
}
