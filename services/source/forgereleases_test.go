package source_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

const subjectForgeRelease = "sluice.source.forgerelease.requested"

// A release of a repository that makes its releases on its forge asks
// notify for one, once however often the release's event comes, with the
// tag a tag's run was of or else the version; the tag Sluice makes, pushed
// back, runs nothing. A repository that does not is asked for none.
func TestForgeReleaseRequested(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	ctx := context.Background()
	onGitea := &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA, Url: "http://127.0.0.1:3000", Project: "acme/app"}
	if _, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: t.TempDir(), ForgeReleases: true}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("forge_releases without a forge: %v", err)
	}
	src, _ := newGitRepo(t, "app", "main", rulesPipeline)
	res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: src.Dir, Forge: onGitea, ForgeReleases: true})
	if err != nil {
		t.Fatal(err)
	}
	repo := res.GetRepository()
	if !repo.GetForgeReleases() {
		t.Fatal("the repository does not say it makes its releases on its forge")
	}
	released := func(run *sourcev1.Run, version string) *sourceeventsv1.ForgeReleaseRequested {
		t.Helper()
		ev := h.publish(&releaseeventsv1.ReleasePublished{RunId: run.Id, Repository: repoRef(run, repo.GetUrl()),
			Release: &releasev1.Release{Id: "rel-" + run.Id, Version: version, Commit: run.Commit, RunId: run.Id, Changelog: "### Fixes\n- a bug"}},
			"rel-"+run.Id, run.Id, time.Now())
		h.publishEvent(ev, true)
		h.waitConsumed()
		h.outboxBarrier("app")
		got := h.runEvents(subjectForgeRelease, run.Id)
		if len(got) != 1 {
			t.Fatalf("run %s: %d ForgeReleaseRequested, want 1", run.Id, len(got))
		}
		return payload[*sourceeventsv1.ForgeReleaseRequested](t, got[0])
	}

	// A run of the branch: the tag is the version.
	run := h.trigger("app", "")
	p := released(run, "v0.2.0")
	if p.GetTag() != "v0.2.0" || p.GetVersion() != "v0.2.0" || p.GetCommit() != run.Commit || p.GetReleaseId() != "rel-"+run.Id ||
		p.GetChangelog() != "### Fixes\n- a bug" || p.GetForge().GetProject() != "acme/app" || p.GetRunId() != run.Id {
		t.Errorf("requested %v", p)
	}
	// Gitea tells of the tag notify made: no run.
	src.SetRef("refs/tags/v0.2.0", run.Commit)
	body := pushBody("refs/tags/v0.2.0", run.Commit)
	if a := h.forgeHook("gitea", "gitea", "app", "d-tag", repo.GetWebhookSecret(), body); a.code != http.StatusOK || a.body["status"] != "duplicate commit" || a.body["run_id"] != run.Id {
		t.Errorf("the release's tag pushed back: %d %v, want a duplicate of %s", a.code, a.body, run.Id)
	}

	// A run of a tag that names no version: the tag is the tag's.
	next := src.CommitFile("src/a.go", "package a\n", "feat: a\n")
	src.SetRef("refs/tags/v2", next)
	body = pushBody("refs/tags/v2", next)
	a := h.forgeHook("gitea", "gitea", "app", "d-v2", repo.GetWebhookSecret(), body)
	if a.code != http.StatusAccepted || a.body["status"] != "queued" {
		t.Fatalf("tag v2: %d %v", a.code, a.body)
	}
	if p := released(h.getRun(a.body["run_id"]), "v0.3.0"); p.GetTag() != "v2" || p.GetVersion() != "v0.3.0" {
		t.Errorf("a tag's release: tag %q version %q, want v2 v0.3.0", p.GetTag(), p.GetVersion())
	}

	// A repository on a forge that does not make its releases there; its
	// registration again does not turn them on.
	other, _ := newGitRepo(t, "plain", "main", validPipeline)
	res, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: other.Dir, Forge: onGitea})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: other.Dir, Forge: onGitea, ForgeReleases: true}); connect.CodeOf(err) != connect.CodeAlreadyExists {
		t.Errorf("registered again with forge_releases: %v, want already_exists", err)
	}
	plain := h.trigger("plain", "")
	h.publish(&releaseeventsv1.ReleasePublished{RunId: plain.Id, Repository: repoRef(plain, res.GetRepository().GetUrl()),
		Release: &releasev1.Release{Id: "rel-plain", Version: "v0.1.0", Commit: plain.Commit}}, "rel-plain", plain.Id, time.Now())
	servicekittest.Eventually(t, "the plain release folded", func() bool { return h.getRun(plain.Id).GetReleaseVersion() == "v0.1.0" })
	h.outboxBarrier("plain")
	if got := h.runEvents(subjectForgeRelease, plain.Id); len(got) != 0 {
		t.Errorf("a repository without forge_releases: %d requests", len(got))
	}
}
