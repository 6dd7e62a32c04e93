package notify_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/notify"
)

// fakeReleases is a GitHub Enterprise Server's release API: it makes
// each release it is sent unless the tag has one (422, as GitHub
// answers), answers look-ups by tag, and fails while down.
type fakeReleases struct {
	mu    sync.Mutex
	made  map[string]string // tag: "commit name body"
	posts map[string]int    // tag: POSTs
	auth  []string          // the Authorization of each POST
	down  atomic.Bool
}

func (f *fakeReleases) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, `{"message":"unicorns"}`, http.StatusBadGateway)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	const base = "/api/v3/repos/acme/app/releases"
	const commits = "/api/v3/repos/acme/app/commits/refs/tags/"
	switch tag, byTag := strings.CutPrefix(r.URL.Path, base+"/tags/"); {
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, commits):
		// Where a tag is: its release's commit (the tests' releases are
		// all of statusSHA), else GitHub's "No commit found".
		if _, ok := f.made[strings.TrimPrefix(r.URL.Path, commits)]; !ok {
			http.Error(w, `{"message":"No commit found for SHA"}`, http.StatusUnprocessableEntity)
			return
		}
		_, _ = w.Write([]byte(statusSHA))
	case r.Method == http.MethodPost && r.URL.Path == base:
		var body struct {
			Tag    string `json:"tag_name"`
			Commit string `json:"target_commitish"`
			Name   string `json:"name"`
			Body   string `json:"body"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.posts[body.Tag]++
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		if _, ok := f.made[body.Tag]; ok {
			http.Error(w, `{"message":"Validation Failed","errors":[{"code":"already_exists"}]}`, http.StatusUnprocessableEntity)
			return
		}
		f.made[body.Tag] = body.Commit + " " + body.Name + " " + body.Body
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":1}`))
	case r.Method == http.MethodGet && byTag:
		if _, ok := f.made[tag]; !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"id":1}`))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeReleases) state(tag string) (made string, posts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.made[tag], f.posts[tag]
}

func releaseEvent(forgeURL, id, tag string) *sourceeventsv1.ForgeReleaseRequested {
	return &sourceeventsv1.ForgeReleaseRequested{
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: "app", Url: "https://git.example.com/acme/app.git"},
		Forge:      &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITHUB, Url: forgeURL, Project: "acme/app"},
		RunId:      "run-1", ReleaseId: id, Version: "v1.2.0", Tag: tag, Commit: statusSHA, Changelog: "### Features\n- a feature (0d1a26e)",
	}
}

// A release is made on the forge once, with the repository's token: a
// forge that is down gets it later, the event of it delivered again makes
// no second one, and a release the forge has already (an earlier attempt's
// answer lost) counts as made.
func TestForgeReleases(t *testing.T) {
	api := &fakeReleases{made: map[string]string{}, posts: map[string]int{}}
	forgeSrv := httptest.NewServer(api)
	t.Cleanup(forgeSrv.Close)
	src := &fakeSource{}
	src.token.Store("ghp-canary-token")
	mux := http.NewServeMux()
	mux.Handle(sourcev1connect.NewSecretServiceHandler(src))
	srcSrv := httptest.NewServer(mux)
	t.Cleanup(srcSrv.Close)
	h := newHarness(t, func(c *notify.Config) { c.SourceURL = srcSrv.URL })

	// Down: tried, then made once the forge is back.
	api.down.Store(true)
	first := h.publishInRun(releaseEvent(forgeSrv.URL, "rel-1", "v1.2.0"), "rel-1", "run-1")
	h.waitHandled(first)
	eventually(t, "source asked for the token", func() (bool, string) { return src.asked.Load() >= 1, "" })
	api.down.Store(false)
	eventually(t, "the release on the forge", func() (bool, string) {
		made, posts := api.state("v1.2.0")
		return made != "", fmt.Sprintf("%d POSTs", posts)
	})
	if made, _ := api.state("v1.2.0"); made != statusSHA+" v1.2.0 ### Features\n- a feature (0d1a26e)" {
		t.Errorf("made %q", made)
	}

	// The same release again (its event redelivered under another id): no
	// second request.
	again := h.publishInRun(releaseEvent(forgeSrv.URL, "rel-1", "v1.2.0"), "rel-1", "run-1")
	h.waitHandled(again)

	// A release the forge has already: made, once tried.
	api.mu.Lock()
	api.made["v1.3.0"] = "by hand"
	api.mu.Unlock()
	h.publishInRun(releaseEvent(forgeSrv.URL, "rel-2", "v1.3.0"), "rel-2", "run-1")
	// And one more, to show the loop went on past both.
	h.publishInRun(releaseEvent(forgeSrv.URL, "rel-3", "v1.4.0"), "rel-3", "run-1")
	eventually(t, "the third release", func() (bool, string) { made, _ := api.state("v1.4.0"); return made != "", "" })
	eventually(t, "the release there already tried", func() (bool, string) { _, posts := api.state("v1.3.0"); return posts >= 1, "" })
	if _, posts := api.state("v1.2.0"); posts != 1 {
		t.Errorf("v1.2.0 POSTed %d times once the forge was up, want 1", posts)
	}
	if made, posts := api.state("v1.3.0"); made != "by hand" || posts != 1 {
		t.Errorf("v1.3.0: %q after %d POSTs, want the forge's own after 1", made, posts)
	}
	eventually(t, "v1.3.0 logged as made", func() (bool, string) {
		return len(h.logs.With(`msg="release made on the forge"`, "tag=v1.3.0")) == 1, ""
	})
	if given := h.logs.With("given up"); len(given) != 0 {
		t.Errorf("given up: %v", given)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	for _, a := range api.auth {
		if a != "Bearer ghp-canary-token" {
			t.Errorf("a release sent with Authorization %q", a)
		}
	}
}
