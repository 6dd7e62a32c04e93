package forge_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/platform/forge"
)

// recorded is one request a fake forge API received.
type recorded struct {
	method, path, auth string
	body               map[string]any
}

// fakeAPI answers every request with code and body, or as answers says
// for its method and path ("POST /api/v1/..."), and records it.
type fakeAPI struct {
	mu      sync.Mutex
	reqs    []recorded
	code    int
	body    string
	answers map[string]answer
}

type answer struct {
	code int
	body string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	rec := recorded{method: r.Method, path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization")}
	if tok := r.Header.Get("PRIVATE-TOKEN"); tok != "" {
		rec.auth = "PRIVATE-TOKEN " + tok
	}
	_ = json.Unmarshal(raw, &rec.body)
	f.mu.Lock()
	f.reqs = append(f.reqs, rec)
	code, body := f.code, f.body
	if a, ok := f.answers[rec.method+" "+rec.path]; ok {
		code, body = a.code, a.body
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func startAPI(t *testing.T, code int, body string) (*fakeAPI, string) {
	t.Helper()
	f := &fakeAPI{code: code, body: body}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

const sha = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"

// Each forge's client sends the forge's own request: its path, its
// authentication, its names for the states, as the forges' API
// references give them.
func TestSetStatusRequests(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 200)
	cases := []struct {
		kind     forge.Kind
		project  string
		state    forge.State
		path     string
		auth     string
		fields   map[string]any
		response string
	}{
		{forge.GitHub, "acme/app", forge.StateRunning, "/api/v3/repos/acme/app/statuses/" + sha, "Bearer tok-1",
			map[string]any{"state": "pending", "context": "sluice/build", "target_url": "https://ci.example.com/runs/r1"},
			`{"id":1,"state":"pending"}`},
		{forge.GitHub, "acme/app", forge.StateCancelled, "/api/v3/repos/acme/app/statuses/" + sha, "Bearer tok-1",
			map[string]any{"state": "error"}, `{"id":1,"state":"error"}`},
		{forge.Gitea, "alice/hello", forge.StateFailure, "/api/v1/repos/alice/hello/statuses/" + sha, "token tok-1",
			map[string]any{"state": "failure", "context": "sluice/build", "target_url": "https://ci.example.com/runs/r1"},
			`{"id":1,"status":"failure"}`},
		{forge.GitLab, "group/sub/app", forge.StateRunning, "/api/v4/projects/group%2Fsub%2Fapp/statuses/" + sha, "PRIVATE-TOKEN tok-1",
			map[string]any{"state": "running", "name": "sluice/build", "target_url": "https://ci.example.com/runs/r1"},
			`{"id":1,"status":"running"}`},
		{forge.GitLab, "group/app", forge.StateCancelled, "/api/v4/projects/group%2Fapp/statuses/" + sha, "PRIVATE-TOKEN tok-1",
			map[string]any{"state": "canceled"}, `{"id":1,"status":"canceled"}`},
	}
	for _, c := range cases {
		t.Run(string(c.kind)+" "+string(c.state), func(t *testing.T) {
			t.Parallel()
			api, url := startAPI(t, http.StatusCreated, c.response)
			client, err := forge.NewClient(forge.Repo{Kind: c.kind, URL: url, Project: c.project}, "tok-1", http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			err = client.SetStatus(context.Background(), sha, forge.Status{
				Context: "sluice/build", State: c.state, Description: long, TargetURL: "https://ci.example.com/runs/r1",
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(api.reqs) != 1 {
				t.Fatalf("%d requests", len(api.reqs))
			}
			got := api.reqs[0]
			if got.method != http.MethodPost || got.path != c.path || got.auth != c.auth {
				t.Errorf("sent %s %s (%s), want POST %s (%s)", got.method, got.path, got.auth, c.path, c.auth)
			}
			for k, v := range c.fields {
				if got.body[k] != v {
					t.Errorf("%s = %v, want %v (body %v)", k, got.body[k], v, got.body)
				}
			}
			if d, _ := got.body["description"].(string); len([]rune(d)) != forge.MaxDescription || !strings.HasSuffix(d, "…") {
				t.Errorf("description of %d characters, want it cut to %d", len([]rune(d)), forge.MaxDescription)
			}
		})
	}
}

func TestSetStatusErrors(t *testing.T) {
	t.Parallel()
	for _, kind := range forge.Kinds() {
		for _, c := range []struct {
			code     int
			rejected bool
		}{{http.StatusUnprocessableEntity, true}, {http.StatusBadRequest, true}, {http.StatusUnauthorized, false}, {http.StatusNotFound, false}, {http.StatusBadGateway, false}} {
			_, url := startAPI(t, c.code, `{"message":"no"}`)
			project := "acme/app"
			client, err := forge.NewClient(forge.Repo{Kind: kind, URL: url, Project: project}, "tok", http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			err = client.SetStatus(context.Background(), sha, forge.Status{Context: "sluice", State: forge.StatePending})
			if err == nil || errors.Is(err, forge.ErrRejected) != c.rejected {
				t.Errorf("%s answering %d: %v (rejected: want %v)", kind, c.code, err, c.rejected)
			}
		}
	}
	// GitLab's refusal to set a state the status has is no error.
	_, url := startAPI(t, http.StatusBadRequest, `{"message":"Cannot transition status via :run from :running"}`)
	client, _ := forge.NewClient(forge.Repo{Kind: forge.GitLab, URL: url, Project: "a/b"}, "tok", http.DefaultClient)
	if err := client.SetStatus(context.Background(), sha, forge.Status{Context: "sluice", State: forge.StateRunning}); err != nil {
		t.Errorf("a transition to the same state: %v", err)
	}
	if _, err := forge.NewClient(forge.Repo{Kind: forge.GitHub, URL: url, Project: "a/b"}, "", http.DefaultClient); !errors.Is(err, forge.ErrInvalid) {
		t.Errorf("no token: %v", err)
	}
}

// github.com's API is api.github.com; only a GitHub Enterprise Server
// is asked at <url>/api/v3.
func TestGitHubDotComAPI(t *testing.T) {
	t.Parallel()
	var host string
	client, err := forge.NewClient(forge.Repo{Kind: forge.GitHub, URL: "https://github.com", Project: "acme/app"}, "tok",
		&http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			host = r.URL.Host + r.URL.Path
			return nil, errors.New("not sent")
		})})
	if err != nil {
		t.Fatal(err)
	}
	_ = client.SetStatus(context.Background(), sha, forge.Status{Context: "sluice", State: forge.StateSuccess})
	if host != "api.github.com/repos/acme/app/statuses/"+sha {
		t.Errorf("asked %s", host)
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
