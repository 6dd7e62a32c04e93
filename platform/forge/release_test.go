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

// Each forge's client makes a release with its own request: the tag, the
// commit it is made at when the tag is new, the title and the notes, as
// the forges' API documents them.
func TestCreateReleaseRequests(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind    forge.Kind
		project string
		path    string
		fields  map[string]any
	}{
		{forge.GitHub, "acme/app", "/api/v3/repos/acme/app/releases",
			map[string]any{"tag_name": "v1.2.0", "target_commitish": sha, "name": "v1.2.0", "body": "- fix: a bug"}},
		{forge.Gitea, "alice/hello", "/api/v1/repos/alice/hello/releases",
			map[string]any{"tag_name": "v1.2.0", "target_commitish": sha, "name": "v1.2.0", "body": "- fix: a bug"}},
		{forge.GitLab, "group/sub/app", "/api/v4/projects/group%2Fsub%2Fapp/releases",
			map[string]any{"tag_name": "v1.2.0", "ref": sha, "name": "v1.2.0", "description": "- fix: a bug"}},
	}
	for _, c := range cases {
		t.Run(string(c.kind), func(t *testing.T) {
			t.Parallel()
			api, url := startAPI(t, http.StatusCreated, `{"id":1,"tag_name":"v1.2.0"}`)
			client, err := forge.NewClient(forge.Repo{Kind: c.kind, URL: url, Project: c.project}, "tok-1", http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			if err := client.CreateRelease(context.Background(), forge.Release{Tag: "v1.2.0", Commit: sha, Name: "v1.2.0", Notes: "- fix: a bug"}); err != nil {
				t.Fatal(err)
			}
			if len(api.reqs) != 1 {
				t.Fatalf("%d requests", len(api.reqs))
			}
			got := api.reqs[0]
			if got.method != http.MethodPost || got.path != c.path {
				t.Errorf("sent %s %s, want POST %s", got.method, got.path, c.path)
			}
			for k, v := range c.fields {
				if got.body[k] != v {
					t.Errorf("%s = %v, want %v (body %v)", k, got.body[k], v, got.body)
				}
			}
		})
	}
}

// A release of the tag that is there already (an earlier attempt's answer
// was lost) counts as made; a conflict without one, a request the forge
// calls wrong, is rejected; a forge that is down is an error to retry.
func TestCreateReleaseWhenItExists(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		kind     forge.Kind
		conflict int
		create   string
		lookUp   string
	}{
		{forge.GitHub, http.StatusUnprocessableEntity, "/api/v3/repos/acme/app/releases", "/api/v3/repos/acme/app/releases/tags/v1.0.0"},
		{forge.Gitea, http.StatusConflict, "/api/v1/repos/acme/app/releases", "/api/v1/repos/acme/app/releases/tags/v1.0.0"},
		{forge.GitLab, http.StatusConflict, "/api/v4/projects/acme%2Fapp/releases", "/api/v4/projects/acme%2Fapp/releases/v1%2E0%2E0"},
	} {
		rel := forge.Release{Tag: "v1.0.0", Commit: sha, Name: "v1.0.0"}
		for _, lookUp := range []struct {
			code    int
			made    bool
			reject  bool
			summary string
		}{
			{http.StatusOK, true, false, "there"},
			{http.StatusNotFound, false, true, "not there"},
			{http.StatusBadGateway, false, false, "look-up failed"},
		} {
			api, url := startAPI(t, http.StatusInternalServerError, `{"message":"unexpected"}`)
			api.answers = map[string]answer{
				"POST " + c.create: {c.conflict, `{"message":"already exists"}`},
				"GET " + c.lookUp:  {lookUp.code, `{"id":7,"tag_name":"v1.0.0"}`},
			}
			client, err := forge.NewClient(forge.Repo{Kind: c.kind, URL: url, Project: "acme/app"}, "tok", http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			err = client.CreateRelease(context.Background(), rel)
			switch {
			case lookUp.made && err != nil:
				t.Errorf("%s, release %s: %v (requests %v)", c.kind, lookUp.summary, err, api.reqs)
			case !lookUp.made && (err == nil || errors.Is(err, forge.ErrRejected) != lookUp.reject):
				t.Errorf("%s, release %s: %v (rejected: want %v; requests %v)", c.kind, lookUp.summary, err, lookUp.reject, api.reqs)
			}
		}
		_, url := startAPI(t, http.StatusBadGateway, `{"message":"down"}`)
		client, _ := forge.NewClient(forge.Repo{Kind: c.kind, URL: url, Project: "acme/app"}, "tok", http.DefaultClient)
		if err := client.CreateRelease(context.Background(), rel); err == nil || errors.Is(err, forge.ErrRejected) {
			t.Errorf("%s down: %v, want an error to retry", c.kind, err)
		}
	}
}

// Notes longer than the forges take are cut, on a rune, saying so.
func TestCreateReleaseCutsLongNotes(t *testing.T) {
	t.Parallel()
	api, url := startAPI(t, http.StatusCreated, `{"id":1}`)
	client, err := forge.NewClient(forge.Repo{Kind: forge.Gitea, URL: url, Project: "a/b"}, "tok", http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CreateRelease(context.Background(), forge.Release{Tag: "v1", Commit: sha, Name: "v1", Notes: strings.Repeat("é", forge.MaxReleaseNotes)}); err != nil {
		t.Fatal(err)
	}
	body, _ := api.reqs[0].body["body"].(string)
	if len(body) > forge.MaxReleaseNotes || !utf8.ValidString(body) || !strings.HasSuffix(body, "(cut)") {
		t.Errorf("notes of %d bytes (valid UTF-8: %v), ending %q", len(body), utf8.ValidString(body), body[max(0, len(body)-20):])
	}
}
