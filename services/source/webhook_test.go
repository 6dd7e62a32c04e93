package source_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source"
)

type webhookAnswer struct {
	code int
	body map[string]string
}

// hook posts a GitHub-style webhook for repository; signature "" sends
// none.
func (h *harness) hook(repository, event, delivery, signature string, body []byte) webhookAnswer {
	h.t.Helper()
	a, err := h.tryHook(repository, event, delivery, signature, body)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// tryRawHook posts a webhook and returns the answer's status code, whatever
// the body says.
func (h *harness) tryRawHook(repository, event, delivery, signature string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.url+"/webhooks/github/"+repository, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", signature)
	res, err := h.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

// tryHook is hook for any goroutine: it returns what went wrong.
func (h *harness) tryHook(repository, event, delivery, signature string, body []byte) (webhookAnswer, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.url+"/webhooks/github/"+repository, bytes.NewReader(body))
	if err != nil {
		return webhookAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	if delivery != "" {
		req.Header.Set("X-GitHub-Delivery", delivery)
	}
	if signature != "" {
		req.Header.Set("X-Hub-Signature-256", signature)
	}
	res, err := h.http.Do(req)
	if err != nil {
		return webhookAnswer{}, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := webhookAnswer{code: res.StatusCode}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		return a, fmt.Errorf("webhook answer %d is not JSON: %s", res.StatusCode, raw)
	}
	return a, nil
}

func pushBody(ref, after string) []byte {
	b, _ := json.Marshal(map[string]any{"ref": ref, "after": after, "repository": map[string]any{"name": "app"}})
	return b
}

// TestWebhook drives the GitHub-style webhook: bad signatures are refused
// and record nothing, a push to the watched branch makes exactly one run
// per delivery, and pings, other branches, deletions and unknown
// repositories get their own answers.
func TestWebhook(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	secret := repo.WebhookSecret
	next := src.CommitFile("main.go", "package main\n", "add main\n")
	body := pushBody("refs/heads/main", next)

	if a := h.hook("app", "push", "d-1", "", body); a.code != http.StatusUnauthorized {
		t.Errorf("no signature: %d %v, want 401", a.code, a.body)
	}
	if a := h.hook("app", "push", "d-1", sign("wrong secret", body), body); a.code != http.StatusUnauthorized {
		t.Errorf("wrong signature: %d %v, want 401", a.code, a.body)
	}
	tampered := pushBody("refs/heads/main", strings.Repeat("0", 39)+"1")
	if a := h.hook("app", "push", "d-1", sign(secret, body), tampered); a.code != http.StatusUnauthorized {
		t.Errorf("signature of another body: %d %v, want 401", a.code, a.body)
	}
	if runs := h.listRuns("app"); len(runs) != 0 {
		t.Fatalf("%d runs after refused webhooks, want none", len(runs))
	}

	// The same delivery id, now signed: the refused attempts recorded
	// nothing, so it makes a run.
	a := h.hook("app", "push", "d-1", sign(secret, body), body)
	if a.code != http.StatusAccepted || a.body["run_id"] == "" {
		t.Fatalf("valid push: %d %v, want 202 with a run id", a.code, a.body)
	}
	runID := a.body["run_id"]
	run := h.getRun(runID)
	if run.Commit != next || run.Trigger != sourcev1.Trigger_TRIGGER_WEBHOOK || run.Branch != "main" || run.Status != sourcev1.RunStatus_RUN_STATUS_QUEUED {
		t.Errorf("run = %v", run)
	}
	change := payload[*sourceeventsv1.ChangeReceived](t, h.waitRunEvent(subjectChange, runID))
	if change.DeliveryId != "d-1" || change.Trigger != sourcev1.Trigger_TRIGGER_WEBHOOK || change.Commit != next {
		t.Errorf("ChangeReceived = %v", change)
	}
	h.waitRunEvent(subjectRunRequested, runID)

	// GitHub redelivers: still one run.
	again := h.hook("app", "push", "d-1", sign(secret, body), body)
	if again.code != http.StatusOK || again.body["status"] != "duplicate delivery" || again.body["run_id"] != runID {
		t.Errorf("redelivery: %d %v, want 200 duplicate delivery of %s", again.code, again.body, runID)
	}
	if runs := h.listRuns("app"); len(runs) != 1 {
		t.Errorf("%d runs after a redelivery, want 1", len(runs))
	}

	ping := []byte(`{"zen":"Keep it logically awesome."}`)
	if a := h.hook("app", "ping", "d-2", sign(secret, ping), ping); a.code != http.StatusOK {
		t.Errorf("ping: %d %v, want 200", a.code, a.body)
	}
	other := pushBody("refs/heads/feature", next)
	if a := h.hook("app", "push", "d-3", sign(secret, other), other); a.code != http.StatusAccepted || a.body["status"] != "ignored" {
		t.Errorf("push to another branch: %d %v, want 202 ignored", a.code, a.body)
	}
	deleted := pushBody("refs/heads/main", strings.Repeat("0", 40))
	if a := h.hook("app", "push", "d-4", sign(secret, deleted), deleted); a.code != http.StatusAccepted || a.body["status"] != "ignored" {
		t.Errorf("deleted branch: %d %v, want 202 ignored", a.code, a.body)
	}
	if a := h.hook("nope", "push", "d-5", sign(secret, body), body); a.code != http.StatusNotFound {
		t.Errorf("unknown repository: %d %v, want 404", a.code, a.body)
	}
	huge := bytes.Repeat([]byte("x"), 1<<20+1)
	if a := h.hook("app", "push", "d-6", sign(secret, huge), huge); a.code != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: %d %v, want 413", a.code, a.body)
	}
	if runs := h.listRuns("app"); len(runs) != 1 {
		t.Errorf("%d runs in the end, want 1", len(runs))
	}
	// The webhook's commit is now the seen head, so polling does not
	// start a second run for it.
	got, err := h.client.GetRepository(context.Background(), &sourcev1.GetRepositoryRequest{Repository: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Repository.LastSeenCommit != next {
		t.Errorf("last seen commit = %s, want the pushed %s", got.Repository.LastSeenCommit, next)
	}
}

// A delivery of an older push that arrives after a newer one still gets
// its run, but does not move the watched branch back, so polling does not
// run the newer head again; and a second hook with its own delivery id for
// the same commit makes no second run.
func TestWebhookOutOfOrderAndTwoHooks(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	secret := repo.WebhookSecret
	older := src.CommitFile("a.go", "package main\n", "add a\n")
	newer := src.CommitFile("b.go", "package main\n", "add b\n")

	push := func(delivery, commit string) webhookAnswer {
		body := pushBody("refs/heads/main", commit)
		return h.hook("app", "push", delivery, sign(secret, body), body)
	}
	newerPush := push("d-new", newer)
	if newerPush.code != http.StatusAccepted || newerPush.body["run_id"] == "" {
		t.Fatalf("newer push: %d %v", newerPush.code, newerPush.body)
	}
	if a := push("d-old", older); a.code != http.StatusAccepted || a.body["run_id"] == "" {
		t.Fatalf("late older push: %d %v, want a run", a.code, a.body)
	}
	got, err := h.client.GetRepository(context.Background(), &sourcev1.GetRepositoryRequest{Repository: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Repository.LastSeenCommit != newer {
		t.Fatalf("last seen commit = %s, want it to stay at the newer %s", got.Repository.LastSeenCommit, newer)
	}
	newerRun := newerPush.body["run_id"]
	if a := push("d-other-hook", newer); a.code != http.StatusOK || a.body["status"] != "duplicate commit" || a.body["run_id"] != newerRun {
		t.Fatalf("second hook for the same commit: %d %v, want 200 duplicate commit naming %s", a.code, a.body, newerRun)
	}
	if runs := h.listRuns("app"); len(runs) != 2 {
		t.Fatalf("%d runs, want 2 (newer, older)", len(runs))
	}
}

// A signed push replayed under a new delivery id (GitHub's "redeliver" of
// an old push, a second hook on the repository, or anyone who kept a
// signed body) makes no run when its commit has one, older or newest: the
// answer is 200 "duplicate commit" naming the commit's latest run.
func TestWebhookReplayWithNewDeliveryIDMakesNoRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	secret := h.register(src.Dir).WebhookSecret
	older := src.CommitFile("a.go", "package main\n", "add a\n")
	newer := src.CommitFile("b.go", "package main\n", "add b\n")
	push := func(delivery, commit string) webhookAnswer {
		body := pushBody("refs/heads/main", commit)
		return h.hook("app", "push", delivery, sign(secret, body), body)
	}
	runOf := map[string]string{}
	for i, commit := range []string{older, newer} {
		a := push(fmt.Sprintf("d-%d", i), commit)
		if a.code != http.StatusAccepted || a.body["run_id"] == "" {
			t.Fatalf("push of %s: %d %v, want 202 with a run", commit[:7], a.code, a.body)
		}
		runOf[commit] = a.body["run_id"]
	}
	for i, commit := range []string{older, newer} {
		a := push(fmt.Sprintf("replay-%d", i), commit)
		if a.code != http.StatusOK || a.body["status"] != "duplicate commit" || a.body["run_id"] != runOf[commit] {
			t.Errorf("replay of the push of %s: %d %v, want 200 duplicate commit naming %s", commit[:7], a.code, a.body, runOf[commit])
		}
	}
	if runs := h.listRuns("app"); len(runs) != 2 {
		t.Fatalf("%d runs after the replays, want 2", len(runs))
	}
	// A run by hand is a run again; a replay then names it.
	manual := h.trigger("app", "main")
	if a := push("replay-after-manual", newer); a.code != http.StatusOK || a.body["run_id"] != manual.Id {
		t.Errorf("replay after a manual run: %d %v, want 200 naming the manual run %s", a.code, a.body, manual.Id)
	}
	if runs := h.listRuns("app"); len(runs) != 3 {
		t.Fatalf("%d runs, want 3 (two pushes, one by hand)", len(runs))
	}
}

// A webhook and the poll that notice a commit at the same moment make one
// run of it, as do two deliveries of it: the database decides, in the
// transaction that records the run. Every webhook answer names that run.
func TestWebhookRacingThePollMakesOneRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0) // the test polls (PollOnce) while the webhooks arrive
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	secret := h.register(src.Dir).WebhookSecret
	for i := range 5 {
		commit := src.CommitFile(fmt.Sprintf("f%d.go", i), "package main\n", fmt.Sprintf("add f%d\n", i))
		body := pushBody("refs/heads/main", commit)
		var (
			wg      sync.WaitGroup
			answers [2]webhookAnswer
			errs    [2]error
		)
		for j := range answers {
			wg.Go(func() {
				answers[j], errs[j] = h.tryHook("app", "push", fmt.Sprintf("d-%d-%d", i, j), sign(secret, body), body)
			})
		}
		wg.Go(func() { h.svc.PollOnce(context.Background()) })
		wg.Wait()

		var ofCommit []*sourcev1.Run
		for _, r := range h.listRuns("app") {
			if r.Commit == commit {
				ofCommit = append(ofCommit, r)
			}
		}
		if len(ofCommit) != 1 {
			t.Fatalf("commit %d: %d runs, want 1", i, len(ofCommit))
		}
		for j, a := range answers {
			if errs[j] != nil {
				t.Fatalf("commit %d, webhook %d: %v", i, j, errs[j])
			}
			if (a.code != http.StatusAccepted && a.code != http.StatusOK) || a.body["run_id"] != ofCommit[0].Id {
				t.Errorf("commit %d, webhook %d: %d %v, want 2xx naming run %s", i, j, a.code, a.body, ofCommit[0].Id)
			}
		}
	}
}

// With webhook-addr, the webhook receiver is served on an address of its
// own that serves nothing of the API.
func TestWebhookListenerServesWebhooksOnly(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	h := newHarness(t, 0, func(c *source.Config) { c.WebhookAddr = addr })
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	secret := h.register(src.Dir).GetWebhookSecret()
	src.Write("README", "pushed\n")
	head := src.Commit("a push")

	hooks := &harness{t: t, url: "http://" + addr, http: http.DefaultClient}
	body := pushBody("refs/heads/main", head)
	if a := hooks.hook("app", "push", "d-1", sign(secret, body), body); a.code != http.StatusAccepted || a.body["status"] != "queued" {
		t.Fatalf("a push on the webhook address: %d %v", a.code, a.body)
	}
	for _, path := range []string{"/sluice.source.v1.SourceService/ListRepositories", "/sluice.source.v1.AccessService/WhoAmI", "/metrics", "/readyz"} {
		res, err := http.Post("http://"+addr+path, "application/json", strings.NewReader("{}")) //nolint:noctx // a test's one request
		if err != nil {
			t.Fatal(err)
		}
		_ = res.Body.Close()
		if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s on the webhook address: %d, want 404", path, res.StatusCode)
		}
	}
	res, err := http.Get("http://" + addr + "/healthz") //nolint:noctx // a test's one request
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("healthz on the webhook address: %v %v", res, err)
	}
	_ = res.Body.Close()
}
