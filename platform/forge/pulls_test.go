package forge_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/sluicehq/sluice/platform/forge"
)

// Each forge's list of open pull (merge) requests, as its API reference
// shows it, reads into the same shape; a fork's is marked, and one whose
// head is not known yet is left for the next pass.
func TestOpenPullRequests(t *testing.T) {
	t.Parallel()
	const other = "4e2f0b8b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f"
	cases := []struct {
		kind forge.Kind
		body string
		path string
	}{
		{forge.GitHub, `[{"number":3,"title":"t","head":{"ref":"f","sha":"` + sha + `","repo":{"full_name":"acme/app"}},"base":{"ref":"main","repo":{"full_name":"acme/app"}}},
			{"number":2,"head":{"ref":"g","sha":"` + other + `","repo":{"full_name":"mallory/app"}},"base":{"ref":"main","repo":{"full_name":"acme/app"}}},
			{"number":1,"head":{"ref":"h","sha":""},"base":{"ref":"main"}}]`, "/api/v3/repos/acme/app/pulls"},
		{forge.Gitea, `[{"number":3,"title":"t","head":{"ref":"f","sha":"` + sha + `","repo_id":1,"repo":{"id":1}},"base":{"ref":"main","repo_id":1,"repo":{"id":1}}},
			{"number":2,"head":{"ref":"g","sha":"` + other + `","repo_id":9,"repo":{"id":9}},"base":{"ref":"main","repo_id":1,"repo":{"id":1}}},
			{"number":1,"head":{"ref":"h","sha":""},"base":{"ref":"main"}}]`, "/api/v1/repos/acme/app/pulls"},
		{forge.GitLab, `[{"iid":3,"title":"t","sha":"` + sha + `","source_branch":"f","target_branch":"main","source_project_id":1,"target_project_id":1},
			{"iid":2,"sha":"` + other + `","source_branch":"g","target_branch":"main","source_project_id":9,"target_project_id":1},
			{"iid":1,"sha":"","source_branch":"h","target_branch":"main","source_project_id":1,"target_project_id":1}]`, "/api/v4/projects/acme%2Fapp/merge_requests"},
	}
	for _, c := range cases {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			api, url := startAPI(t, http.StatusOK, c.body)
			client, err := forge.NewClient(forge.Repo{Kind: c.kind, URL: url, Project: "acme/app"}, "tok", http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			got, err := client.OpenPullRequests(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := []forge.PullRequest{
				{Number: 3, Action: forge.PullRequestOpened, HeadSHA: sha, HeadRef: "f", BaseRef: "main", Title: "t"},
				{Number: 2, Action: forge.PullRequestOpened, HeadSHA: other, HeadRef: "g", BaseRef: "main", FromFork: true},
			}
			if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
			if len(api.reqs) != 1 || api.reqs[0].method != http.MethodGet || api.reqs[0].path != c.path {
				t.Errorf("requests %+v, want one GET %s", api.reqs, c.path)
			}
		})
	}
}
