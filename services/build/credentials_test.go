package build_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/servicekit"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/build"
)

// fakeSecrets stands in for source's SecretService: it hands out the
// values of tokens[run id] as the repository's credential and records
// what it was asked.
type fakeSecrets struct {
	sourcev1connect.UnimplementedSecretServiceHandler
	mu     sync.Mutex
	tokens map[string]string
	asked  []string
}

func (f *fakeSecrets) ResolveSecrets(_ context.Context, req *sourcev1.ResolveSecretsRequest) (*sourcev1.ResolveSecretsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, req.GetRunId()+":"+strings.Join(req.GetNames(), ","))
	values := map[string]string{}
	for _, name := range req.GetNames() {
		switch name {
		case gitauth.TokenSecret:
			values[name] = f.tokens[req.GetRunId()]
		case gitauth.UsernameSecret:
			values[name] = gitauth.DefaultUsername
		default:
			return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("%s is not asked for", name))
		}
	}
	return &sourcev1.ResolveSecretsResponse{Values: values}, nil
}

func (f *fakeSecrets) askedFor(runID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.asked {
		if strings.HasPrefix(a, runID+":") {
			out = append(out, a)
		}
	}
	return out
}

// A repository served over HTTPS with a token: build asks source for the
// token only when the run says the repository has one, checks out with
// it, masks it in the log, and fails clearly with a wrong one. No event
// or log line shows it.
func TestCheckoutWithToken(t *testing.T) {
	t.Parallel()
	const token = "tok-build-canary-9a7c31"
	g := gittest.New(t)
	commit := g.CommitFiles("add files", map[string]string{"leak.txt": "the token is " + token + "\n"})
	srv := gittest.ServeHTTP(t, filepath.Dir(g.Dir), gitauth.DefaultUsername, token)
	url := srv.URL + "/" + filepath.Base(g.Dir)

	secrets := &fakeSecrets{tokens: map[string]string{}}
	mux := http.NewServeMux()
	mux.Handle(sourcev1connect.NewSecretServiceHandler(secrets))
	source := httptest.NewServer(mux) // on 127.0.0.1
	t.Cleanup(source.Close)

	h := newHarness(t, build.Config{WorkerID: "worker-1", SourceURL: source.URL, Settings: servicekit.Settings{AllowEgress: []string{egress.Loopback}}})
	spec := &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "show", Run: "cat leak.txt; git -C . log --oneline 2>/dev/null | wc -l"}}}
	request := func(tok string, kind sourcev1.GitCredentialKind) string {
		req := runRequest(repo{dir: url, commit: commit}, spec)
		req.Repository.GitCredential = kind
		secrets.mu.Lock()
		secrets.tokens[req.GetRunId()] = tok
		secrets.mu.Unlock()
		h.publish(t, req)
		return req.GetRunId()
	}
	https := sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_HTTPS_TOKEN

	ok := request(token, https)
	fin := h.finished(t, ok)
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("with the token: %v", fin)
	}
	if fin.GetRepository().GetGitCredential() != https {
		t.Errorf("BuildFinished's repository %v does not say it has a token (test needs it)", fin.GetRepository())
	}
	if got := secrets.askedFor(ok); !slices.Equal(got, []string{ok + ":" + gitauth.TokenSecret + "," + gitauth.UsernameSecret}) {
		t.Errorf("source was asked %v", got)
	}
	lines := texts(h.logs(t, ok).GetLines())
	if find(h.logs(t, ok).GetLines(), "the token is ***") < 0 {
		t.Errorf("the token is not masked in the step's output:\n%s", strings.Join(lines, "\n"))
	}

	wrong := request("tok-wrong-value-1", https)
	fin = h.finished(t, wrong)
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || !strings.Contains(fin.GetFailureReason(), "checkout failed: the server refused the repository's https-token") {
		t.Errorf("with a wrong token: %v; want a checkout failure saying the token was refused", fin)
	}
	lines = append(lines, texts(h.logs(t, wrong).GetLines())...)

	none := request(token, sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_UNSPECIFIED)
	fin = h.finished(t, none)
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || !strings.Contains(fin.GetFailureReason(), "needs a credential") {
		t.Errorf("a run that says the repository has no credential: %v; want a checkout failure saying it needs one", fin)
	}
	if got := secrets.askedFor(none); len(got) != 0 {
		t.Errorf("source was asked %v for a repository without a credential", got)
	}

	shown := strings.Join(lines, "\n")
	for _, runID := range []string{ok, wrong, none} {
		for _, ev := range h.rec.of(runID) {
			shown += "\n" + protojson.Format(ev.Payload) + fmt.Sprint(ev.Content)
		}
	}
	if strings.Contains(shown, token) {
		t.Errorf("the token shows in the events or logs:\n%s", shown)
	}
}
