package source_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

const rulesPipeline = validPipeline + `on:
  push:
    branches: [main, "release/*"]
    paths: ["src/**", .sluice.yaml]
  tag: ["v*"]
`

// TestPushRules drives the pipeline's on: section through webhooks:
// pushes to the branches it names run and others do not, a push to the
// repository's branch that changed none of its paths is seen but not run,
// and tags it names run their commit (an annotated tag's object is
// peeled), once per tag.
func TestPushRules(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, first := newGitRepo(t, "rules", "main", rulesPipeline)
	repo := h.register(src.Dir)
	push := func(delivery, ref, after string) webhookAnswer {
		t.Helper()
		body := pushBody(ref, after)
		return h.hook("rules", "push", delivery, sign(repo.WebhookSecret, body), body)
	}
	queued := func(a webhookAnswer, what string) *sourcev1.Run {
		t.Helper()
		if a.code != http.StatusAccepted || a.body["status"] != "queued" {
			t.Fatalf("%s: %d %v, want 202 queued", what, a.code, a.body)
		}
		return h.getRun(a.body["run_id"])
	}
	ignored := func(a webhookAnswer, what string, reason ...string) {
		t.Helper()
		if a.code != http.StatusAccepted || a.body["status"] != "ignored" {
			t.Fatalf("%s: %d %v, want 202 ignored", what, a.code, a.body)
		}
		mustContain(t, a.body["reason"], reason...)
	}

	// A release branch the rules name runs.
	src.Write("src/a.go", "package a\n")
	rel := src.Commit("on a release branch\n")
	src.SetRef("refs/heads/release/1.2", rel)
	src.SetRef("refs/heads/main", first) // main does not move
	run := queued(push("d-1", "refs/heads/release/1.2", rel), "push to release/1.2")
	if run.Branch != "release/1.2" || run.Ref != "refs/heads/release/1.2" || run.Commit != rel {
		t.Errorf("run of release/1.2 = %s %s %s", run.Branch, run.Ref, run.Commit)
	}
	if a := push("d-2", "refs/heads/release/1.2", rel); a.body["status"] != "duplicate commit" || a.body["run_id"] != run.Id {
		t.Errorf("the same commit again: %v, want duplicate commit of %s", a.body, run.Id)
	}

	// A branch the rules do not name runs nothing.
	src.SetRef("refs/heads/feature/x", rel)
	ignored(push("d-3", "refs/heads/feature/x", rel), "push to feature/x",
		"branch feature/x matches none of the pipeline's on.push.branches (main, release/*)")

	// Branches named like a ref or like a pull request's runs are no
	// branch to run, whatever the rules say.
	src.SetRef("refs/heads/refs/tags/v9.9.9", rel)
	ignored(push("d-3a", "refs/heads/refs/tags/v9.9.9", rel), "push to a branch named refs/tags/v9.9.9", "is named like a ref")
	src.SetRef("refs/heads/pull/5", rel)
	ignored(push("d-3b", "refs/heads/pull/5", rel), "push to a branch named pull/5", "has the name pull request runs are on")

	// The repository's branch: a change to docs only is seen, not run,
	// and the poll does not run it either.
	src.Remove("src/a.go") // release/1.2's, not main's
	docs := src.CommitFile("docs/readme.md", "# docs\n", "docs only\n")
	ignored(push("d-4", "refs/heads/main", docs), "docs-only push to main",
		"the push changed no path matching the pipeline's on.push.paths (src/**, .sluice.yaml)")
	h.svc.PollOnce(context.Background())
	got, err := h.client.GetRepository(context.Background(), &sourcev1.GetRepositoryRequest{Repository: "rules"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Repository.LastSeenCommit != docs {
		t.Errorf("last seen commit = %s, want the docs-only %s", got.Repository.LastSeenCommit, docs)
	}
	code := src.CommitFile("src/b.go", "package a\n", "code\n")
	queued(push("d-5", "refs/heads/main", code), "push to main that changed src/")

	// Tags: an annotated tag the rules name runs its commit; another tag
	// of the same commit is a run of its own; other tags run nothing.
	src.Tag("v1.0.0", code)
	tagObject, err := src.Git().Tag("v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	tagRun := queued(push("d-6", "refs/tags/v1.0.0", tagObject.Hash().String()), "tag v1.0.0")
	if tagRun.Ref != "refs/tags/v1.0.0" || tagRun.Branch != "" || tagRun.Commit != code || tagRun.Trigger != sourcev1.Trigger_TRIGGER_WEBHOOK {
		t.Errorf("run of tag v1.0.0 = ref %s branch %q commit %s trigger %s, want the tagged commit %s", tagRun.Ref, tagRun.Branch, tagRun.Commit, tagRun.Trigger, code)
	}
	if a := push("d-7", "refs/tags/v1.0.0", code); a.body["status"] != "duplicate commit" || a.body["run_id"] != tagRun.Id {
		t.Errorf("tag v1.0.0 again: %v, want duplicate commit of %s", a.body, tagRun.Id)
	}
	src.Tag("v1.0.1", code)
	if again := queued(push("d-8", "refs/tags/v1.0.1", code), "tag v1.0.1"); again.Id == tagRun.Id {
		t.Error("a second tag of the commit made no run of its own")
	}
	src.Tag("nightly", code)
	ignored(push("d-9", "refs/tags/nightly", code), "tag nightly", "tag nightly matches none of the pipeline's on.tag (v*)")
	ignored(push("d-10", "refs/tags/v9", strings.Repeat("0", 40)), "deleted tag", "refs/tags/v9 was deleted")
	if a := push("d-11", "refs/tags/v404", code); a.code != http.StatusUnprocessableEntity || !strings.Contains(a.body["error"], "tag v404 is not in repository") {
		t.Errorf("a tag the repository does not have: %d %v, want 422", a.code, a.body)
	}

	// A pipeline without on: runs only the repository's branch, and no tag.
	plain, _ := newGitRepo(t, "plain", "main", validPipeline)
	plainRepo := h.register(plain.Dir)
	next := plain.CommitFile("x", "x\n", "x\n")
	plain.SetRef("refs/heads/dev", next)
	plain.Tag("v1", next)
	for _, tt := range []struct{ ref, reason string }{
		{"refs/heads/dev", "push to dev, not to the repository's branch main"},
		{"refs/tags/v1", "tag v1: the pipeline has no on.tag"},
	} {
		body := pushBody(tt.ref, next)
		ignored(h.hook("plain", "push", "p-"+tt.ref, sign(plainRepo.WebhookSecret, body), body), tt.ref, tt.reason)
	}
	if runs := h.listRuns("plain"); len(runs) != 0 {
		t.Errorf("%d runs of plain, want none", len(runs))
	}
	if runs := h.listRuns("rules"); len(runs) != 4 {
		t.Errorf("%d runs of rules, want 4 (release/1.2, main, v1.0.0, v1.0.1)", len(runs))
	}
}

// TestPollRunsMissedPushes: pushes of branches and tags whose webhooks
// were lost are found by the poll and run as their webhooks would have
// run them (the pipeline's on: section decides), once; what was there
// when the repository was registered is history and runs nothing; a tag
// made again on another commit runs again.
func TestPollRunsMissedPushes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, first := newGitRepo(t, "missed", "main", rulesPipeline)
	src.SetRef("refs/heads/release/0", first)
	src.Tag("v0.1.0", first)
	repo := h.register(src.Dir)
	ctx := context.Background()
	h.svc.PollOnce(ctx)
	if runs := h.listRuns("missed"); len(runs) != 0 {
		t.Fatalf("%d runs of the refs there at registration, want none", len(runs))
	}

	rel := src.CommitFile("src/a.go", "package a\n", "on release/1\n")
	src.SetRef("refs/heads/release/1", rel)
	src.SetRef("refs/heads/feature/x", rel)
	src.Tag("v1.0.0", rel)
	src.SetRef("refs/heads/main", first) // main does not move
	h.svc.PollOnce(ctx)
	h.svc.PollOnce(ctx)
	byRef := map[string]*sourcev1.Run{}
	for _, r := range h.listRuns("missed") {
		if _, dup := byRef[r.Ref]; dup {
			t.Errorf("two runs of %s", r.Ref)
		}
		byRef[r.Ref] = r
	}
	if len(byRef) != 2 || byRef["refs/heads/release/1"] == nil || byRef["refs/tags/v1.0.0"] == nil {
		t.Fatalf("runs after the poll: %v, want release/1 and v1.0.0", byRef)
	}
	for _, r := range byRef {
		if r.Trigger != sourcev1.Trigger_TRIGGER_POLL || r.Commit != rel {
			t.Errorf("run of %s: %s of %s, want the poll's of %s", r.Ref, r.Trigger, r.Commit, rel)
		}
	}

	// A push its webhook announced is not run again by the poll.
	next := src.CommitFile("src/b.go", "package a\n", "on release/2\n")
	src.SetRef("refs/heads/release/2", next)
	src.SetRef("refs/heads/main", first)
	body := pushBody("refs/heads/release/2", next)
	if a := h.hook("missed", "push", "d-1", sign(repo.WebhookSecret, body), body); a.body["status"] != "queued" {
		t.Fatalf("push to release/2: %v", a.body)
	}
	h.svc.PollOnce(ctx)
	if runs := h.listRuns("missed"); len(runs) != 3 {
		t.Fatalf("%d runs after the webhook's push and a poll, want 3", len(runs))
	}

	// A tag deleted and made again on another commit runs again.
	src.RemoveRef("refs/tags/v1.0.0")
	h.svc.PollOnce(ctx)
	src.Tag("v1.0.0", next)
	h.svc.PollOnce(ctx)
	runs := h.listRuns("missed")
	if len(runs) != 4 || runs[0].Ref != "refs/tags/v1.0.0" || runs[0].Commit != next {
		t.Fatalf("after v1.0.0 was made again on %s: %d runs, newest %s of %s", next, len(runs), runs[0].Ref, runs[0].Commit)
	}
}
