package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/forge"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/notify"
)

// fakeSource answers ResolveSecrets with the forge token, once it has one.
type fakeSource struct {
	sourcev1connect.UnimplementedSecretServiceHandler
	token atomic.Value // string
	asked atomic.Int32
}

func (f *fakeSource) ResolveSecrets(_ context.Context, req *sourcev1.ResolveSecretsRequest) (*sourcev1.ResolveSecretsResponse, error) {
	f.asked.Add(1)
	token, _ := f.token.Load().(string)
	if len(req.GetNames()) != 1 || req.GetNames()[0] != forge.TokenSecret {
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("asked for %v", req.GetNames()))
	}
	if token == "" {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("repository %q has no forge token", "app"))
	}
	return &sourcev1.ResolveSecretsResponse{Values: map[string]string{forge.TokenSecret: token}}, nil
}

// fakeForge is a GitHub Enterprise Server's status API: it records each
// status it is sent, and fails while down.
type fakeForge struct {
	mu   sync.Mutex
	sent []string // "context state description"
	auth []string
	down atomic.Bool
}

func (f *fakeForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, `{"message":"unicorns"}`, http.StatusBadGateway)
		return
	}
	var body struct {
		State, Context, Description string
		TargetURL                   string `json:"target_url"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	if !strings.HasPrefix(r.URL.Path, "/api/v3/repos/acme/app/statuses/") {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.sent = append(f.sent, body.Context+" "+body.State+" "+body.Description+" "+body.TargetURL)
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"id":1}`))
}

func (f *fakeForge) statuses() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

const statusSHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"

func statusEvent(forgeURL string, seq uint64, state sourceeventsv1.CommitStatusState, description string) *sourceeventsv1.CommitStatusChanged {
	return &sourceeventsv1.CommitStatusChanged{
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: "app", Url: "https://git.example.com/acme/app.git"},
		Forge:      &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITHUB, Url: forgeURL, Project: "acme/app"},
		RunId:      "run-1", Commit: statusSHA, Context: "sluice", State: state, Description: description, Sequence: seq,
	}
}

// Commit statuses reach the forge with the repository's token, the
// latest of a context only, never an older one after a newer one; a forge
// that is down, or a token not yet set, gets them later.
func TestForgeStatuses(t *testing.T) {
	forgeAPI := &fakeForge{}
	forgeSrv := httptest.NewServer(forgeAPI)
	t.Cleanup(forgeSrv.Close)
	src := &fakeSource{}
	mux := http.NewServeMux()
	mux.Handle(sourcev1connect.NewSecretServiceHandler(src))
	srcSrv := httptest.NewServer(mux)
	t.Cleanup(srcSrv.Close)

	h := newHarness(t, func(c *notify.Config) {
		c.SourceURL = srcSrv.URL
		c.RunURL = "https://ci.example.com/runs/{run}?repo={repository}"
	})
	const (
		pending = sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_PENDING
		running = sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_RUNNING
		success = sourceeventsv1.CommitStatusState_COMMIT_STATUS_STATE_SUCCESS
	)
	waitSent := func(n int) []string {
		t.Helper()
		var got []string
		eventually(t, fmt.Sprintf("%d statuses on the forge", n), func() (bool, string) {
			got = forgeAPI.statuses()
			return len(got) >= n, strings.Join(got, "; ")
		})
		return got
	}

	// No token yet: the status waits, asking again, until there is one.
	h.publishInRun(statusEvent(forgeSrv.URL, 1, pending, "queued"), "run-1", "run-1")
	eventually(t, "source is asked for the token twice", func() (bool, string) { return src.asked.Load() >= 2, "" })
	if got := forgeAPI.statuses(); len(got) != 0 {
		t.Fatalf("sent without a token: %v", got)
	}
	src.token.Store("ghp-canary-token")
	got := waitSent(1)
	if got[0] != "sluice pending queued https://ci.example.com/runs/run-1?repo=app" || forgeAPI.auth[0] != "Bearer ghp-canary-token" {
		t.Errorf("first status %q, auth %q", got[0], forgeAPI.auth[0])
	}

	// The forge goes down; the run moves on twice meanwhile. Once it is
	// back, it gets the latest only.
	forgeAPI.down.Store(true)
	h.publishInRun(statusEvent(forgeSrv.URL, 2, running, "build: running"), "run-1", "run-1")
	p := h.publishInRun(statusEvent(forgeSrv.URL, 3, success, "passed"), "run-1", "run-1")
	h.waitHandled(p)
	forgeAPI.down.Store(false)
	// An attempt at the older one under way as the forge comes back may
	// get through first; the latest comes last.
	eventually(t, "the latest status on the forge", func() (bool, string) {
		got = forgeAPI.statuses()
		return len(got) >= 2 && strings.HasPrefix(got[len(got)-1], "sluice success passed"), strings.Join(got, "; ")
	})
	for _, s := range got[1 : len(got)-1] {
		if !strings.HasPrefix(s, "sluice pending build: running") {
			t.Errorf("between: %q", s)
		}
	}

	// A late, older status changes nothing.
	n := len(got)
	p = h.publishInRun(statusEvent(forgeSrv.URL, 2, running, "build: running"), "run-1-late", "run-1")
	h.waitHandled(p)
	// A status of another context, after it, shows the loop went on.
	other := statusEvent(forgeSrv.URL, 1, pending, "waiting")
	other.Context = "sluice/test"
	h.publishInRun(other, "run-1-other", "run-1")
	got = waitSent(n + 1)
	if len(got) != n+1 || got[n] != "sluice/test pending waiting https://ci.example.com/runs/run-1?repo=app" {
		t.Errorf("after a late status: %v", got)
	}
	if strings.Contains(strings.Join(got, " "), "ghp-canary-token") {
		t.Error("the token is in a status")
	}
}
