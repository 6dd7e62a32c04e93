package source_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source"
)

// forgeHook posts a push webhook as forge sends it, to path's forge, signed
// with secret in that forge's scheme.
func (h *harness) forgeHook(path, kind, repository, delivery, secret string, body []byte) webhookAnswer {
	h.t.Helper()
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	sig := hex.EncodeToString(mac.Sum(nil))
	header := http.Header{}
	switch kind {
	case "github":
		header.Set("X-GitHub-Event", "push")
		header.Set("X-GitHub-Delivery", delivery)
		header.Set("X-Hub-Signature-256", "sha256="+sig)
	case "gitea":
		header.Set("X-Gitea-Event", "push")
		header.Set("X-Gitea-Delivery", delivery)
		header.Set("X-Gitea-Signature", sig)
	case "gitlab":
		header.Set("X-Gitlab-Event", "Push Hook")
		header.Set("X-Gitlab-Event-UUID", delivery)
		header.Set("X-Gitlab-Token", secret)
	}
	return h.postWebhook("/webhooks/"+path+"/"+repository, header, body)
}

// postWebhook posts body with header to path and reads the JSON answer.
func (h *harness) postWebhook(path string, header http.Header, body []byte) webhookAnswer {
	h.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.url+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header = header
	res, err := h.http.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := webhookAnswer{code: res.StatusCode}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		h.t.Fatalf("webhook answer %d is not JSON: %s", res.StatusCode, raw)
	}
	return a
}

// Each forge's webhook reaches its own path with its own signature scheme;
// a repository registered on a forge takes only that forge's webhooks.
func TestForgeWebhooks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	ctx := context.Background()
	for _, kind := range []string{"github", "gitea", "gitlab"} {
		t.Run(kind, func(t *testing.T) {
			src, _ := newGitRepo(t, "app-"+kind, "main", validPipeline)
			res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{
				Url: src.Dir,
				Forge: &sourcev1.Forge{
					Kind:    sourcev1.ForgeKind(sourcev1.ForgeKind_value["FORGE_KIND_"+strings.ToUpper(kind)]),
					Url:     "http://127.0.0.1:3000",
					Project: "acme/app-" + kind,
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			repo := res.GetRepository()
			if repo.GetForge().GetProject() != "acme/app-"+kind || repo.GetHasForgeToken() {
				t.Errorf("forge %+v, token %v", repo.GetForge(), repo.GetHasForgeToken())
			}
			name := repo.GetName()
			next := src.CommitFile("main.go", "package main\n", "add main\n")
			body := pushBody("refs/heads/main", next)

			if a := h.forgeHook(kind, kind, name, "d-1", "wrong", body); a.code != http.StatusUnauthorized {
				t.Errorf("wrong secret: %d %v", a.code, a.body)
			}
			other := "github"
			if kind == "github" {
				other = "gitea"
			}
			if a := h.forgeHook(other, other, name, "d-1", repo.GetWebhookSecret(), body); a.code != http.StatusConflict ||
				!strings.Contains(a.body["error"], "/webhooks/"+kind+"/"+name) {
				t.Errorf("another forge's webhook: %d %v, want 409 naming the right path", a.code, a.body)
			}
			if runs := h.listRuns(name); len(runs) != 0 {
				t.Fatalf("%d runs after refused webhooks", len(runs))
			}
			a := h.forgeHook(kind, kind, name, "d-1", repo.GetWebhookSecret(), body)
			if a.code != http.StatusAccepted || a.body["run_id"] == "" {
				t.Fatalf("push: %d %v", a.code, a.body)
			}
			if again := h.forgeHook(kind, kind, name, "d-1", repo.GetWebhookSecret(), body); again.body["status"] != "duplicate delivery" || again.body["run_id"] != a.body["run_id"] {
				t.Errorf("redelivery: %d %v", again.code, again.body)
			}
		})
	}

	// Forgejo is Gitea; an unknown forge has no path.
	if a := h.forgeHook("bitbucket", "github", "app-github", "d-2", "x", []byte(`{}`)); a.code != http.StatusNotFound {
		t.Errorf("unknown forge: %d %v", a.code, a.body)
	}
	// A repository without a forge takes any forge's webhook, checked in
	// that forge's scheme.
	src, _ := newGitRepo(t, "plain", "main", validPipeline)
	plain := h.register(src.Dir)
	next := src.CommitFile("main.go", "package main\n", "add main\n")
	if a := h.forgeHook("forgejo", "gitea", "plain", "d-3", plain.GetWebhookSecret(), pushBody("refs/heads/main", next)); a.code != http.StatusAccepted {
		t.Errorf("forgejo webhook to a repository without a forge: %d %v", a.code, a.body)
	}
}

func TestRegisterOnAForge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHarness(t, 0, func(c *source.Config) { c.Keys.Text = newSecretKey(t) })
	src, _ := newGitRepo(t, "app", "main", validPipeline)

	invalid := []struct {
		forge *sourcev1.Forge
		token string
		want  string
	}{
		// A local path says nothing of the forge.
		{&sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA}, "", "set forge.url and forge.project"},
		{&sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITHUB, Url: "https://github.com", Project: "a/b/c"}, "", "forge.project"},
		{&sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITHUB, Url: "https://tok@github.com", Project: "a/b"}, "", "forge.url"},
		{&sourcev1.Forge{Url: "https://github.com", Project: "a/b"}, "", "forge.kind"},
		{nil, "a-token", "forge_token needs forge"},
		{&sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA, Url: "https://git.example.com", Project: "a/b"}, "two words", "forge_token"},
	}
	for _, c := range invalid {
		_, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, Forge: c.forge, ForgeToken: c.token})
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("forge %v token %q: got %v, want invalid_argument naming %q", c.forge, c.token, err, c.want)
		}
	}

	place := &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITLAB, Url: "https://gitlab.example.com/", Project: "group/sub/app"}
	res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, Forge: place, ForgeToken: "glpat-canary-0f3a"})
	if err != nil {
		t.Fatal(err)
	}
	got := res.GetRepository()
	if got.GetForge().GetUrl() != "https://gitlab.example.com" || got.GetForge().GetKind() != sourcev1.ForgeKind_FORGE_KIND_GITLAB || !got.GetHasForgeToken() {
		t.Errorf("registered %v, has token %v", got.GetForge(), got.GetHasForgeToken())
	}
	read, err := h.client.GetRepository(ctx, &sourcev1.GetRepositoryRequest{Repository: "app"})
	if err != nil || read.GetRepository().GetForge().GetProject() != "group/sub/app" || !read.GetRepository().GetHasForgeToken() {
		t.Errorf("GetRepository: %v, %v", read.GetRepository(), err)
	}
	list, err := h.secrets().ListSecrets(ctx, &sourcev1.ListSecretsRequest{Repository: "app"})
	if err != nil || len(list.GetSecrets()) != 1 || list.GetSecrets()[0].GetName() != "SLUICE_FORGE_TOKEN" {
		t.Errorf("secrets: %v, %v", list.GetSecrets(), err)
	}
	if strings.Contains(h.logs.String(), "glpat-canary-0f3a") {
		t.Error("the forge token is in the log")
	}

	// Registering it again: the same forge is the same repository; a
	// token or another forge is refused, saying what to do.
	if again, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, Forge: place}); err != nil || again.GetCreated() {
		t.Errorf("again: %v, %v", again, err)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, Forge: place, ForgeToken: "glpat-another"})
	if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "sluice secret set app SLUICE_FORGE_TOKEN") {
		t.Errorf("again with a token: %v", err)
	}
	place.Project = "group/other"
	if _, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, Forge: place}); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Errorf("again on another project: %v", err)
	}

	// The forge token is a repository's, never platform-wide.
	_, err = h.secrets().SetSecret(ctx, &sourcev1.SetSecretRequest{Name: "SLUICE_FORGE_TOKEN", Value: "glpat-platform"})
	if ce := new(connect.Error); !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "not a platform-wide secret") {
		t.Errorf("platform-wide forge token: %v", err)
	}
}

// giteaPullRequest posts a Gitea pull_request webhook for repository app.
func (h *harness) giteaPullRequest(secret, delivery, action string, number int64, head string, fork bool) webhookAnswer {
	h.t.Helper()
	return h.giteaPullRequestTo("app", secret, delivery, action, number, head, fork)
}

// giteaPullRequestTo posts a Gitea pull_request webhook for repository.
func (h *harness) giteaPullRequestTo(repository, secret, delivery, action string, number int64, head string, fork bool) webhookAnswer {
	h.t.Helper()
	headRepo := "acme/app"
	if fork {
		headRepo = "mallory/app"
	}
	body, _ := json.Marshal(map[string]any{
		"action": action, "number": number,
		"pull_request": map[string]any{
			"number": number, "title": "a change",
			"head": map[string]any{"ref": "feature", "sha": head, "repo": map[string]any{"full_name": headRepo}},
			"base": map[string]any{"ref": "main", "repo": map[string]any{"full_name": "acme/app"}},
		},
	})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	header := http.Header{}
	header.Set("X-Gitea-Event", "pull_request")
	header.Set("X-Gitea-Delivery", delivery)
	header.Set("X-Gitea-Signature", hex.EncodeToString(mac.Sum(nil)))
	return h.postWebhook("/webhooks/gitea/"+repository, header, body)
}

// A pull request's opening and each push to it start a run of its head,
// on its own branch, that never releases; closing it cancels its runs;
// `runs --pr` lists them. Its commands get no secrets when it is from a
// fork, nor unless the repository lets pull requests have them.
func TestPullRequests(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHarness(t, 0, func(c *source.Config) { c.Keys.Text = newSecretKey(t) })
	src, _ := newGitRepo(t, "app", "main", secretsPipeline)
	res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, PullRequestSecrets: true, ForkPullRequests: true,
		Forge: &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA, Url: "http://127.0.0.1:3000", Project: "acme/app"}})
	if err != nil {
		t.Fatal(err)
	}
	secret := res.GetRepository().GetWebhookSecret()
	h.setSecret("app", "REGISTRY_TOKEN", "canary-registry-token-pr")
	h.setSecret("", "SHARED_KEY", "canary-shared-pr")

	// The pull request's head is on a branch of its own (a fork's is only
	// under refs/pull/<n>/head).
	head, err := src.Git().Head()
	if err != nil {
		t.Fatal(err)
	}
	src.SetRef("refs/heads/feature", head.Hash().String())
	src.Checkout("feature")
	first := src.CommitFile("feature.txt", "1\n", "feature\n")
	src.SetRef("refs/pull/7/head", first)
	a := h.giteaPullRequest(secret, "pr-1", "opened", 7, first, false)
	if a.code != http.StatusAccepted || a.body["run_id"] == "" {
		t.Fatalf("opened: %d %v", a.code, a.body)
	}
	run := h.getRun(a.body["run_id"])
	if run.GetTrigger() != sourcev1.Trigger_TRIGGER_PULL_REQUEST || run.GetBranch() != "pull/7" || run.GetRef() != "refs/pull/7/head" ||
		run.GetPullRequest() != 7 || run.GetPullRequestFromFork() || run.GetPipeline().GetRelease() != nil || run.GetCommit() != first {
		t.Errorf("the pull request's run: %+v", run)
	}
	if again := h.giteaPullRequest(secret, "pr-1", "opened", 7, first, false); again.body["status"] != "duplicate delivery" {
		t.Errorf("redelivered: %d %v", again.code, again.body)
	}
	// Its commands get the secrets they ask for: the repository allows it
	// for its own branches.
	if values, err := h.resolve(h.asService("build"), run.Id, "REGISTRY_TOKEN"); err != nil || values["REGISTRY_TOKEN"] != "canary-registry-token-pr" {
		t.Errorf("own branch's pull request: %v, %v", values, err)
	}

	second := src.CommitFile("feature.txt", "2\n", "feature again\n")
	src.SetRef("refs/pull/7/head", second)
	a = h.giteaPullRequest(secret, "pr-2", "synchronized", 7, second, false)
	if a.code != http.StatusAccepted || a.body["run_id"] == "" || a.body["run_id"] == run.Id {
		t.Fatalf("synchronized: %d %v", a.code, a.body)
	}
	listed, err := h.client.ListRuns(ctx, &sourcev1.ListRunsRequest{Repository: "app", PullRequest: 7})
	if err != nil || len(listed.GetRuns()) != 2 {
		t.Fatalf("runs of #7: %v, %v", listed.GetRuns(), err)
	}
	if _, err := h.client.ListRuns(ctx, &sourcev1.ListRunsRequest{PullRequest: 7}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("--pr without a repository: %v", err)
	}

	a = h.giteaPullRequest(secret, "pr-3", "closed", 7, second, false)
	if a.code != http.StatusAccepted || a.body["status"] != "cancelled" {
		t.Fatalf("closed: %d %v", a.code, a.body)
	}
	// Reopened with the same head: it runs again.
	if a := h.giteaPullRequest(secret, "pr-3b", "reopened", 7, second, false); a.code != http.StatusAccepted || a.body["status"] != "queued" {
		t.Errorf("reopened: %d %v", a.code, a.body)
	}
	for _, r := range listed.GetRuns() {
		got := h.getRun(r.Id)
		if got.GetCancelRequestedBy() != "pull request #7 was closed" && got.GetStatus() != sourcev1.RunStatus_RUN_STATUS_CANCELLED {
			t.Errorf("run %s after the close: %s, cancel asked by %q", r.Id, got.GetStatus(), got.GetCancelRequestedBy())
		}
	}

	// From a fork: no secret, whatever the repository allows.
	fork := src.CommitFile("feature.txt", "3\n", "from a fork\n")
	src.SetRef("refs/pull/8/head", fork)
	a = h.giteaPullRequest(secret, "pr-4", "opened", 8, fork, true)
	if a.code != http.StatusAccepted {
		t.Fatalf("fork opened: %d %v", a.code, a.body)
	}
	forkRun := h.getRun(a.body["run_id"])
	if !forkRun.GetPullRequestFromFork() {
		t.Errorf("fork run %+v", forkRun)
	}
	_, err = h.resolve(h.asService("build"), forkRun.Id, "REGISTRY_TOKEN")
	if connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "from a fork") {
		t.Errorf("a fork's run asked for a secret: %v", err)
	}
	// Run again, it is still the fork's pull request's run; its head
	// cannot be triggered as an ordinary run.
	if _, err := h.client.CancelRun(ctx, &sourcev1.CancelRunRequest{RunId: forkRun.Id, Force: true}); err != nil {
		t.Fatal(err)
	}
	rerun, err := h.client.RerunRun(ctx, &sourcev1.RerunRunRequest{RunId: forkRun.Id})
	if err != nil {
		t.Fatal(err)
	}
	if r := rerun.GetRun(); r.GetPullRequest() != 8 || !r.GetPullRequestFromFork() || r.GetPipeline().GetRelease() != nil {
		t.Errorf("rerun of the fork's run: %+v", r)
	}
	if _, err := h.resolve(h.asService("build"), rerun.GetRun().GetId(), "REGISTRY_TOKEN"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("the rerun of a fork's run asked for a secret: %v", err)
	}
	if _, err := h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "app", Ref: "refs/pull/8/head"}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("triggering a pull request's head: %v", err)
	}

	// A repository that does not run forks' pull requests ignores them.
	other, _ := newGitRepo(t, "noforks", "main", secretsPipeline)
	res, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: other.Dir,
		Forge: &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA, Url: "http://127.0.0.1:3000", Project: "acme/noforks"}})
	if err != nil {
		t.Fatal(err)
	}
	a = h.giteaPullRequestTo("noforks", res.GetRepository().GetWebhookSecret(), "pr-5", "opened", 9, fork, true)
	if a.code != http.StatusAccepted || a.body["status"] != "ignored" || !strings.Contains(a.body["reason"], "--fork-pull-requests") {
		t.Errorf("a fork's pull request on a repository that does not run them: %d %v", a.code, a.body)
	}
}
