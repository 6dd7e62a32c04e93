package forge_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/forge"
)

// releaseAPI is where each forge's API makes a release, looks one up by
// its tag and tells where a tag is, for project acme/app and tag v1.0.0,
// and how it says a tag is at sha.
type releaseAPI struct {
	kind                  forge.Kind
	create, lookUp, tagAt string
	conflict              int
	// noTag is how the forge answers about a tag that is not there.
	noTag   answer
	tagBody func(sha string) string
}

func releaseAPIs() []releaseAPI {
	return []releaseAPI{
		{forge.GitHub, "/api/v3/repos/acme/app/releases", "/api/v3/repos/acme/app/releases/tags/v1.0.0",
			"/api/v3/repos/acme/app/commits/refs/tags/v1.0.0", http.StatusUnprocessableEntity,
			answer{http.StatusUnprocessableEntity, `{"message":"No commit found for SHA: refs/tags/v1.0.0"}`},
			func(sha string) string { return sha }},
		{forge.Gitea, "/api/v1/repos/acme/app/releases", "/api/v1/repos/acme/app/releases/tags/v1.0.0",
			"/api/v1/repos/acme/app/tags/v1.0.0", http.StatusConflict, answer{http.StatusNotFound, `{"message":"Not Found"}`},
			func(sha string) string { return `{"name":"v1.0.0","commit":{"sha":"` + sha + `"}}` }},
		{forge.GitLab, "/api/v4/projects/acme%2Fapp/releases", "/api/v4/projects/acme%2Fapp/releases/v1%2E0%2E0",
			"/api/v4/projects/acme%2Fapp/repository/tags/v1%2E0%2E0", http.StatusConflict,
			answer{http.StatusNotFound, `{"message":"404 Tag Not Found"}`},
			func(sha string) string { return `{"name":"v1.0.0","commit":{"id":"` + sha + `"}}` }},
	}
}

var release100 = forge.Release{Tag: "v1.0.0", Commit: sha, Name: "v1.0.0", Notes: "- fix: a bug"}

// startReleaseAPI is a forge API that answers as answers says, and 500
// to anything else.
func startReleaseAPI(t *testing.T, c releaseAPI, answers map[string]answer) (*fakeAPI, forge.Client) {
	t.Helper()
	api, url := startAPI(t, http.StatusInternalServerError, `{"message":"unexpected"}`)
	api.answers = answers
	client, err := forge.NewClient(forge.Repo{Kind: c.kind, URL: url, Project: "acme/app"}, "tok-1", http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	return api, client
}

// posts are the POSTs api received.
func (f *fakeAPI) posts() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, r := range f.reqs {
		if r.method == http.MethodPost {
			out = append(out, r)
		}
	}
	return out
}

// Each forge's client makes a release of a new tag with its own request:
// the tag, the commit it is made at, the title and the notes, as the
// forges' API documents them, with the token.
func TestCreateReleaseRequests(t *testing.T) {
	t.Parallel()
	fields := map[forge.Kind]map[string]any{
		forge.GitHub: {"tag_name": "v1.0.0", "target_commitish": sha, "name": "v1.0.0", "body": "- fix: a bug"},
		forge.Gitea:  {"tag_name": "v1.0.0", "target_commitish": sha, "name": "v1.0.0", "body": "- fix: a bug"},
		forge.GitLab: {"tag_name": "v1.0.0", "ref": sha, "name": "v1.0.0", "description": "- fix: a bug"},
	}
	auth := map[forge.Kind]string{forge.GitHub: "Bearer tok-1", forge.Gitea: "token tok-1", forge.GitLab: "PRIVATE-TOKEN tok-1"}
	for _, c := range releaseAPIs() {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			api, client := startReleaseAPI(t, c, map[string]answer{
				"GET " + c.tagAt:   c.noTag,
				"POST " + c.create: {http.StatusCreated, `{"id":1,"tag_name":"v1.0.0"}`},
			})
			if err := client.CreateRelease(context.Background(), release100); err != nil {
				t.Fatalf("%v (requests %v)", err, api.reqs)
			}
			posts := api.posts()
			if len(posts) != 1 || posts[0].auth != auth[c.kind] {
				t.Fatalf("POSTs %v, want one with %q", posts, auth[c.kind])
			}
			for k, v := range fields[c.kind] {
				if posts[0].body[k] != v {
					t.Errorf("%s = %v, want %v (body %v)", k, posts[0].body[k], v, posts[0].body)
				}
			}
		})
	}
}

// A release of the tag that is there already (an earlier attempt's answer
// was lost) counts as made; a conflict without one is rejected; a look-up
// that fails is an error to retry, as is a forge that is down.
func TestCreateReleaseWhenItExists(t *testing.T) {
	t.Parallel()
	for _, c := range releaseAPIs() {
		for _, lookUp := range []struct {
			code         int
			made, reject bool
			summary      string
		}{
			{http.StatusOK, true, false, "there"},
			{http.StatusNotFound, false, true, "not there"},
			{http.StatusBadGateway, false, false, "look-up failed"},
		} {
			api, client := startReleaseAPI(t, c, map[string]answer{
				"GET " + c.tagAt:   {http.StatusOK, c.tagBody(sha)},
				"POST " + c.create: {c.conflict, `{"message":"already exists"}`},
				"GET " + c.lookUp:  {lookUp.code, `{"id":7,"tag_name":"v1.0.0"}`},
			})
			err := client.CreateRelease(context.Background(), release100)
			switch {
			case lookUp.made && err != nil:
				t.Errorf("%s, release %s: %v (requests %v)", c.kind, lookUp.summary, err, api.reqs)
			case !lookUp.made && (err == nil || errors.Is(err, forge.ErrRejected) != lookUp.reject):
				t.Errorf("%s, release %s: %v (rejected: want %v; requests %v)", c.kind, lookUp.summary, err, lookUp.reject, api.reqs)
			}
		}
		_, url := startAPI(t, http.StatusBadGateway, `{"message":"down"}`)
		client, _ := forge.NewClient(forge.Repo{Kind: c.kind, URL: url, Project: "acme/app"}, "tok", http.DefaultClient)
		if err := client.CreateRelease(context.Background(), release100); err == nil || errors.Is(err, forge.ErrRejected) {
			t.Errorf("%s down: %v, want an error to retry", c.kind, err)
		}
	}
}

// A tag that is at another commit (pushed before the release, or moved)
// is never given the release: it is rejected, saying so, and nothing is
// made.
func TestCreateReleaseOfATagAtAnotherCommit(t *testing.T) {
	t.Parallel()
	other := strings.Repeat("e", 40)
	for _, c := range releaseAPIs() {
		api, client := startReleaseAPI(t, c, map[string]answer{
			"GET " + c.tagAt:   {http.StatusOK, c.tagBody(other)},
			"POST " + c.create: {http.StatusCreated, `{"id":1}`},
		})
		err := client.CreateRelease(context.Background(), release100)
		if !errors.Is(err, forge.ErrRejected) || !strings.Contains(err.Error(), "tag v1.0.0 is at commit eeeeeeeeeeee") {
			t.Errorf("%s: %v, want it rejected naming the tag's commit", c.kind, err)
		}
		if posts := api.posts(); len(posts) != 0 {
			t.Errorf("%s: %d POSTs, want none", c.kind, len(posts))
		}
	}
}

// Notes longer than the forges take are cut, on a rune, saying so.
func TestCreateReleaseCutsLongNotes(t *testing.T) {
	t.Parallel()
	c := releaseAPIs()[1]
	api, client := startReleaseAPI(t, c, map[string]answer{
		"GET " + c.tagAt:   c.noTag,
		"POST " + c.create: {http.StatusCreated, `{"id":1}`},
	})
	rel := release100
	rel.Notes = strings.Repeat("é", forge.MaxReleaseNotes)
	if err := client.CreateRelease(context.Background(), rel); err != nil {
		t.Fatal(err)
	}
	body, _ := api.posts()[0].body["body"].(string)
	if len(body) > forge.MaxReleaseNotes || !utf8.ValidString(body) || !strings.HasSuffix(body, "(cut)") {
		t.Errorf("notes of %d bytes (valid UTF-8: %v), ending %q", len(body), utf8.ValidString(body), body[max(0, len(body)-20):])
	}
}
