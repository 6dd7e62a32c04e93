package source_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"

	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source"
)

// TestCreateRepository registers a local repository by a relative path and
// checks the defaults (absolute URL, name from the directory, branch from
// HEAD, generated secret, head recorded as seen), the idempotent second
// registration, the conflicting one, and the lookups.
func TestCreateRepository(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	ctx := context.Background()
	src, head := newGitRepo(t, "Hello World.git", "trunk", validPipeline)

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: rel})
	if err != nil {
		t.Fatal(err)
	}
	repo := res.Repository
	if !res.Created {
		t.Error("created = false for a new repository")
	}
	if repo.Url != src.Dir {
		t.Errorf("url = %q, want the absolute path %q", repo.Url, src.Dir)
	}
	if repo.Name != "hello-world" {
		t.Errorf("name = %q, want hello-world", repo.Name)
	}
	if repo.Branch != "trunk" {
		t.Errorf("branch = %q, want trunk (the repository's HEAD)", repo.Branch)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(repo.WebhookSecret) {
		t.Errorf("webhook secret %q is not 32 random bytes in hex", repo.WebhookSecret)
	}
	if repo.LastSeenCommit != head {
		t.Errorf("last seen commit = %q, want the head %s", repo.LastSeenCommit, head)
	}
	if repo.Id == "" || repo.CreateTime == nil {
		t.Errorf("id %q, create time %v: want both set", repo.Id, repo.CreateTime)
	}

	// `sluice up` registers the same repository at every start.
	again, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, Name: "hello-world"})
	if err != nil {
		t.Fatalf("registering again: %v", err)
	}
	if again.Created || again.Repository.Id != repo.Id {
		t.Errorf("second registration: created=%v id=%s, want false and %s", again.Created, again.Repository.Id, repo.Id)
	}
	if again.Repository.WebhookSecret != "" {
		t.Error("the secret was returned again; it is returned only on creation")
	}

	other, _ := newGitRepo(t, "other", "main", validPipeline)
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: other.Dir, Name: "hello-world"})
	if connectCode(err) != connect.CodeAlreadyExists {
		t.Errorf("same name, other url: got %v, want already_exists", err)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: other.Dir, Branch: "nope"})
	if connectCode(err) != connect.CodeInvalidArgument {
		t.Errorf("missing branch: got %v, want invalid_argument", err)
	} else {
		mustContain(t, err.Error(), `branch "nope"`)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: filepath.Join(t.TempDir(), "missing")})
	if connectCode(err) != connect.CodeInvalidArgument {
		t.Errorf("no repository at the path: got %v, want invalid_argument", err)
	}

	for _, key := range []string{"hello-world", repo.Id} {
		got, err := h.client.GetRepository(ctx, &sourcev1.GetRepositoryRequest{Repository: key})
		if err != nil {
			t.Fatalf("GetRepository(%s): %v", key, err)
		}
		if got.Repository.Id != repo.Id || got.Repository.WebhookSecret != "" {
			t.Errorf("GetRepository(%s) = %v, want id %s without secret", key, got.Repository, repo.Id)
		}
	}
	_, err = h.client.GetRepository(ctx, &sourcev1.GetRepositoryRequest{Repository: "nope"})
	if connectCode(err) != connect.CodeNotFound {
		t.Errorf("GetRepository(nope): %v, want not_found", err)
	}
	list, err := h.client.ListRepositories(ctx, &sourcev1.ListRepositoriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Repositories) != 1 || list.Repositories[0].Id != repo.Id {
		t.Errorf("ListRepositories = %v, want only %s", list.Repositories, repo.Id)
	}

	// RepositoryCreated is published once, for the creation only.
	h.waitRunEvent(subjectRepoCreated, "")
	created := h.sourceEvents(subjectRepoCreated)
	if len(created) != 1 {
		t.Fatalf("%d RepositoryCreated events, want 1", len(created))
	}
	p := payload[*sourceeventsv1.RepositoryCreated](t, created[0])
	if p.Repository.Id != repo.Id || p.Repository.Url != src.Dir || p.Branch != "trunk" {
		t.Errorf("RepositoryCreated = %v", p)
	}
	// No run for the history.
	if runs := h.listRuns(""); len(runs) != 0 {
		t.Errorf("%d runs after registration, want none", len(runs))
	}
}

// TestInvalidRequestOverHTTPJSON sends what curl would: a JSON body with an
// empty url. The validation interceptor answers 400 naming the field.
func TestInvalidRequestOverHTTPJSON(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.url+"/sluice.source.v1.SourceService/CreateRepository", bytes.NewBufferString(`{"url":""}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := h.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400; body %s", res.StatusCode, body)
	}
	mustContain(t, string(body), "invalid_argument", "url")
}

// Without allow-egress, CreateRepository reads no local repository and
// connects to no loopback address: the request fails with the refusal,
// which names the setting, and the loopback server sees no request.
func TestCreateRepositoryRefusedByEgress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, func(c *source.Config) { c.AllowEgress = nil })
	src, _ := newGitRepo(t, "local", "main", validPipeline)
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct{ url, allow string }{
		{src.Dir, `"local"`},
		{"file://" + src.Dir, `"local"`},
		{srv.URL + "/repo.git", `"loopback" or "127.0.0.1/32"`},
	} {
		_, err := h.client.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{Url: tc.url})
		var msg string
		if ce := new(connect.Error); errors.As(err, &ce) {
			msg = ce.Message()
		}
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(msg, "egress refused") ||
			!strings.Contains(msg, tc.allow) || !strings.Contains(msg, "$SLUICE_SOURCE_ALLOW_EGRESS") {
			t.Errorf("CreateRepository(%s): %v; want invalid_argument refusing it and naming %s and $SLUICE_SOURCE_ALLOW_EGRESS", tc.url, err, tc.allow)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the loopback server got %d requests", n)
	}
	list, err := h.client.ListRepositories(context.Background(), &sourcev1.ListRepositoriesRequest{})
	if err != nil || len(list.GetRepositories()) != 0 {
		t.Errorf("ListRepositories = %v, %v; want none registered", list.GetRepositories(), err)
	}
}

// A URL that carries credentials is refused before anything is stored or
// fetched, and the refusal does not repeat the credential.
func TestCreateRepositoryRefusesCredentialsInURL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	for _, u := range []string{
		"https://alice:ghp_canary1234@github.example.com/org/app.git",
		"https://ghp_canary1234@github.example.com/org/app.git",
		"HTTP://x-access-token:canary1234@example.com/app",
		"ssh://git:canary1234@example.com/app.git",
		" https://alice:canary1234@github.example.com/org/app.git",
	} {
		_, err := h.client.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{Url: u, Name: "app"})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "must not contain credentials") {
			t.Errorf("CreateRepository(%s) = %v, want invalid_argument about credentials", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "canary1234") {
			t.Errorf("the refusal repeats the credential: %v", err)
		}
	}
	// A user name without a secret is an SSH login, not a credential.
	_, err := h.client.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{Url: "ssh://git@127.0.0.1:1/app.git", Name: "app"})
	if err != nil && strings.Contains(err.Error(), "must not contain credentials") {
		t.Errorf("an SSH user was taken for a credential: %v", err)
	}
}
