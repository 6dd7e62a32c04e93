package forge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/forge"
)

func TestFromCloneURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind forge.Kind
		url  string
		want forge.Repo
		ok   bool
	}{
		{forge.GitHub, "https://github.com/acme/app.git", forge.Repo{Kind: forge.GitHub, URL: "https://github.com", Project: "acme/app"}, true},
		{forge.GitHub, "git@github.com:acme/app.git", forge.Repo{Kind: forge.GitHub, URL: "https://github.com", Project: "acme/app"}, true},
		{forge.Gitea, "http://127.0.0.1:3000/alice/hello", forge.Repo{Kind: forge.Gitea, URL: "http://127.0.0.1:3000", Project: "alice/hello"}, true},
		{forge.GitLab, "ssh://git@gitlab.com/group/sub/app.git", forge.Repo{Kind: forge.GitLab, URL: "https://gitlab.com", Project: "group/sub/app"}, true},
		{forge.GitLab, "https://gitlab.example.com/group/sub/app.git", forge.Repo{Kind: forge.GitLab, URL: "https://gitlab.example.com", Project: "group/sub/app"}, true},
		{forge.Gitea, "https://example.com/gitea/alice/hello.git", forge.Repo{}, false},
		{forge.GitHub, "/srv/git/app", forge.Repo{}, false},
		{forge.GitHub, "https://github.com/acme", forge.Repo{}, false},
	}
	for _, c := range cases {
		got, ok := forge.FromCloneURL(c.kind, c.url)
		if got != c.want || ok != c.ok {
			t.Errorf("FromCloneURL(%s, %q) = %+v, %v; want %+v, %v", c.kind, c.url, got, ok, c.want, c.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good := []forge.Repo{
		{},
		{Kind: forge.GitHub, URL: "https://github.com", Project: "acme/app"},
		{Kind: forge.GitLab, URL: "https://gitlab.com/", Project: "a/b/c"},
	}
	for _, r := range good {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := map[string]forge.Repo{
		"forge.kind":    {Kind: "bitbucket", URL: "https://x", Project: "a/b"},
		"forge.url":     {Kind: forge.GitHub, URL: "ftp://x", Project: "a/b"},
		"credentials":   {Kind: forge.GitHub, URL: "https://tok@github.com", Project: "a/b"},
		"query":         {Kind: forge.GitHub, URL: "https://github.com?x=1", Project: "a/b"},
		"forge.project": {Kind: forge.GitHub, URL: "https://github.com", Project: "a/../b"},
		"owner/name on": {Kind: forge.Gitea, URL: "https://git.example.com", Project: "a/b/c"},
	}
	for want, r := range bad {
		err := r.Validate()
		if !errors.Is(err, forge.ErrInvalid) || !contains(err.Error(), want) {
			t.Errorf("%+v: got %v, want an error naming %q", r, err, want)
		}
	}
	r := forge.Repo{Kind: forge.GitLab, URL: "https://gitlab.com", Project: "group/sub/app"}
	if r.Owner() != "group/sub" || r.Name() != "app" {
		t.Errorf("owner %q name %q", r.Owner(), r.Name())
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
