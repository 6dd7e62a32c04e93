package source_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source"
	"github.com/sluicehq/sluice/services/source/pipeline"
)

// TestTriggerRun triggers runs by every kind of ref and checks the run and
// the RunRequested event build takes, with the parsed pipeline.
func TestTriggerRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, first := newGitRepo(t, "app", "main", validPipeline)
	src.Tag("v1.0.0", first)
	second := src.CommitFile("main.go", "package main\n", "add main\n")
	repo := h.register(src.Dir)

	want, err := pipeline.Parse(".sluice.yaml", []byte(validPipeline))
	if err != nil {
		t.Fatal(err)
	}

	run := h.trigger("app", "")
	if run.Status != sourcev1.RunStatus_RUN_STATUS_QUEUED || run.Commit != second || run.Branch != "main" ||
		run.Ref != "refs/heads/main" || run.Trigger != sourcev1.Trigger_TRIGGER_MANUAL || run.CommitMessage != "add main" {
		t.Errorf("run = %v", run)
	}
	if len(run.Stages) != 3 {
		t.Fatalf("stages = %v, want build, test, release", run.Stages)
	}
	for i, name := range []string{"build", "test", "release"} {
		if run.Stages[i].Name != name || run.Stages[i].Status != sourcev1.StageStatus_STAGE_STATUS_PENDING {
			t.Errorf("stage %d = %v, want %s pending", i, run.Stages[i], name)
		}
	}
	if got := h.getRun(run.Id); !proto.Equal(got.Pipeline, want) {
		t.Errorf("GetRun pipeline = %v, want %v", got.Pipeline, want)
	}

	ev := h.waitRunEvent(subjectRunRequested, run.Id)
	req := payload[*sourceeventsv1.RunRequested](t, ev)
	if !proto.Equal(req.Pipeline, want) {
		t.Errorf("RunRequested pipeline = %v, want %v", req.Pipeline, want)
	}
	if req.RunId != run.Id || req.Commit != second || req.Branch != "main" || req.Repository.Id != repo.Id ||
		req.Repository.Url != src.Dir || req.Trigger != sourcev1.Trigger_TRIGGER_MANUAL || req.CommitMessage != "add main" {
		t.Errorf("RunRequested = %v", req)
	}

	for _, tc := range []struct {
		ref, commit, wantRef, branch string
	}{
		{"main", second, "refs/heads/main", "main"},
		{"v1.0.0", first, "refs/tags/v1.0.0", ""},
		{first, first, first, ""},
		{second[:7], second, second, ""},
	} {
		run := h.trigger(repo.Id, tc.ref)
		if run.Commit != tc.commit || run.Ref != tc.wantRef || run.Branch != tc.branch {
			t.Errorf("TriggerRun(%q): commit %s ref %s branch %q, want %s %s %q", tc.ref, run.Commit, run.Ref, run.Branch, tc.commit, tc.wantRef, tc.branch)
		}
	}

	ctx := context.Background()
	_, err = h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "app", Ref: "no-such-branch"})
	if connectCode(err) != connect.CodeNotFound {
		t.Errorf("unknown ref: %v, want not_found", err)
	} else {
		mustContain(t, err.Error(), `"no-such-branch"`)
	}
	_, err = h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "app", Ref: "main..v1"})
	if connectCode(err) != connect.CodeInvalidArgument {
		t.Errorf("malformed ref: %v, want invalid_argument", err)
	}
	_, err = h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "nope"})
	if connectCode(err) != connect.CodeNotFound {
		t.Errorf("unknown repository: %v, want not_found", err)
	}

	runs := h.listRuns("app")
	if len(runs) != 5 || runs[0].CreateTime.AsTime().Before(runs[4].CreateTime.AsTime()) {
		t.Errorf("ListRuns: %d runs (want 5), newest first", len(runs))
	}
	// A manual trigger leaves what polling saw alone.
	got, err := h.client.GetRepository(ctx, &sourcev1.GetRepositoryRequest{Repository: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Repository.LastSeenCommit != second {
		t.Errorf("last seen commit = %s, want %s (the head at registration)", got.Repository.LastSeenCommit, second)
	}
}

// TestBadPipelineFailsTheRun: an invalid or missing .sluice.yaml fails the
// run at once with the parser's message, publishes RunFinished(FAILED) and
// no RunRequested.
func TestBadPipelineFailsTheRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	const bad = "version: 1\nbuild:\n  steps:\n    - name: compile\n      runn: go build\n"
	src, badCommit := newGitRepo(t, "app", "main", bad)
	h.register(src.Dir)
	_, perr := pipeline.Parse(".sluice.yaml", []byte(bad))
	if perr == nil {
		t.Fatal("the bad pipeline parses")
	}

	run := h.trigger("app", "")
	if run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || run.FailureReason != perr.Error() || run.EndTime == nil {
		t.Errorf("run status %v, reason %q; want failed with %q", run.Status, run.FailureReason, perr.Error())
	}
	if !strings.HasPrefix(run.FailureReason, ".sluice.yaml:4:7: missing required key \"run\"\n.sluice.yaml:5:7: ") {
		t.Errorf("failure reason %q does not start with file:line:col", run.FailureReason)
	}
	for _, s := range run.Stages {
		if s.Status != sourcev1.StageStatus_STAGE_STATUS_SKIPPED {
			t.Errorf("stage %s is %v, want skipped", s.Name, s.Status)
		}
	}
	fin := payload[*sourceeventsv1.RunFinished](t, h.waitRunEvent(subjectRunFinished, run.Id))
	if fin.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || fin.FailureReason != perr.Error() || fin.Commit != badCommit {
		t.Errorf("RunFinished = %v", fin)
	}

	src.Remove(".sluice.yaml")
	noFile := src.Commit("remove the pipeline\n")
	run2 := h.trigger("app", "")
	if want := ".sluice.yaml: not found at commit " + noFile + ", nor any .sluice/*.yaml"; run2.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || run2.FailureReason != want {
		t.Errorf("run without pipeline: %v %q, want failed %q", run2.Status, run2.FailureReason, want)
	}
	h.waitRunEvent(subjectRunFinished, run2.Id)

	// Both RunFinished are out, so everything these runs enqueued is too.
	for _, id := range []string{run.Id, run2.Id} {
		if got := h.runEvents(subjectRunRequested, id); len(got) != 0 {
			t.Errorf("run %s: %d RunRequested published, want none", id, len(got))
		}
	}
	if got := h.getRun(run.Id); got.Pipeline != nil || got.FailureReason != perr.Error() {
		t.Errorf("GetRun = %v", got)
	}
}

// TestHostilePipelineFailsTheRun: a pipeline file over a limit the
// operator set fails its run at once with a message naming the limit and
// the setting, and a file of very many long problems fails its run with a
// reason its events can carry.
func TestHostilePipelineFailsTheRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, func(c *source.Config) { c.MaxPipelineSize, c.MaxPipelineAliasNodes = 1_000_000, 20 })
	// Ten aliases of one env of 3 nodes, which the default limit allows.
	aliases := "version: 1\nbuild:\n  steps:\n    - {name: s0, run: make, env: &e {A: x}}\n"
	for i := 1; i <= 10; i++ {
		aliases += fmt.Sprintf("    - {name: s%d, run: make, env: *e}\n", i)
	}
	if _, err := pipeline.Parse(".sluice.yaml", []byte(aliases)); err != nil {
		t.Fatalf("with the default limits: %v", err)
	}
	src, _ := newGitRepo(t, "app", "main", aliases)
	h.register(src.Dir)
	want := ".sluice.yaml:11:34: the aliases stand for more than 20 YAML nodes; at most 20 are allowed (hint: an alias stands for a copy of its anchor's whole value, the aliases in it included; the source service's max-pipeline-alias-nodes setting sets the limit)"
	if run := h.trigger("app", ""); run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || run.FailureReason != want {
		t.Errorf("aliases: run %v, reason %q; want failed with %q", run.Status, run.FailureReason, want)
	}

	src.CommitFile(".sluice.yaml", "version: 1\n#"+strings.Repeat("x", 1_000_000)+"\n", "a long comment\n")
	want = ".sluice.yaml: the file is larger than 1000000 bytes (hint: the source service's max-pipeline-size setting sets the limit)"
	if run := h.trigger("app", ""); run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || run.FailureReason != want {
		t.Errorf("size: run %v, reason %q; want failed with %q", run.Status, run.FailureReason, want)
	}

	// 3500 unknown keys of 250 characters: as many problems, which would
	// make a reason of 1 MB; a RunFinished that carries it could not be
	// published, and the run would not be made at all.
	var many strings.Builder
	many.WriteString("version: 1\nbuild:\n  steps:\n    - name: a\n      run: make\n")
	for i := range 3500 {
		fmt.Fprintf(&many, "      %s%04d: x\n", strings.Repeat("k", 246), i)
	}
	src.CommitFile(".sluice.yaml", many.String(), "many problems\n")
	run := h.trigger("app", "")
	if run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || len(run.FailureReason) > 16<<10 ||
		!strings.HasSuffix(run.FailureReason, "\n… and 3450 more problems") {
		t.Errorf("many problems: run %v, reason of %d bytes ending %q", run.Status, len(run.FailureReason), run.FailureReason[max(0, len(run.FailureReason)-50):])
	}
	fin := payload[*sourceeventsv1.RunFinished](t, h.waitRunEvent(subjectRunFinished, run.Id))
	if fin.FailureReason != run.FailureReason {
		t.Errorf("RunFinished reason of %d bytes, want the run's", len(fin.FailureReason))
	}
}

// TestPollingNoticesNewCommits polls every 50ms: registering starts no run
// for history; a new commit on the watched branch starts one, a commit on
// another branch none.
func TestPollingNoticesNewCommits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 50*time.Millisecond)
	src, head := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(src.Dir)
	if repo.LastSeenCommit != head {
		t.Fatalf("last seen = %s, want %s", repo.LastSeenCommit, head)
	}
	time.Sleep(300 * time.Millisecond) // several polls
	if runs := h.listRuns("app"); len(runs) != 0 {
		t.Fatalf("%d runs for the history, want none", len(runs))
	}

	next := src.CommitFile("main.go", "package main\n", "add main\n")
	var runs []*sourcev1.Run
	servicekittest.Eventually(t, "polling starts a run for the new commit", func() bool {
		runs = h.listRuns("app")
		return len(runs) > 0
	})
	run := runs[0]
	if run.Commit != next || run.Trigger != sourcev1.Trigger_TRIGGER_POLL || run.Branch != "main" || run.Status != sourcev1.RunStatus_RUN_STATUS_QUEUED {
		t.Errorf("run = %v", run)
	}
	change := payload[*sourceeventsv1.ChangeReceived](t, h.waitRunEvent(subjectChange, run.Id))
	if change.Commit != next || change.Trigger != sourcev1.Trigger_TRIGGER_POLL || change.Ref != "refs/heads/main" {
		t.Errorf("ChangeReceived = %v", change)
	}
	h.waitRunEvent(subjectRunRequested, run.Id)
	servicekittest.Eventually(t, "the new head is recorded as seen", func() bool {
		got, err := h.client.GetRepository(context.Background(), &sourcev1.GetRepositoryRequest{Repository: "app"})
		return err == nil && got.Repository.LastSeenCommit == next
	})

	// A commit on another branch is not the watched branch's change.
	src.SetRef("refs/heads/feature", next)
	src.Checkout("feature")
	src.CommitFile("feature.txt", "x\n", "feature work\n")
	time.Sleep(300 * time.Millisecond)
	if runs := h.listRuns("app"); len(runs) != 1 {
		t.Errorf("%d runs after a commit on another branch, want 1", len(runs))
	}
}

// TestListCommits lists ranges of a history with a merge: the commits
// reachable from `to` and not from `from`, newest first.
func TestListCommits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, c1 := newGitRepo(t, "app", "main", validPipeline)
	c2 := src.CommitFile("a", "a\n", "second\n")
	side := src.Commit("side work\n", c1)
	merge := src.Commit("merge side\n", c2, side)
	src.SetRef("refs/heads/main", merge)
	h.register(src.Dir)
	ctx := context.Background()
	list := func(from, to string, limit int32) []string {
		t.Helper()
		res, err := h.client.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: "app", From: from, To: to, Limit: limit})
		if err != nil {
			t.Fatalf("ListCommits(%s..%s): %v", from, to, err)
		}
		var shas []string
		for _, c := range res.Commits {
			shas = append(shas, c.Sha)
		}
		return shas
	}
	check := func(name string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("c2..merge", list(c2, merge, 0), merge, side)
	check("..merge", list("", merge, 0), merge, side, c2, c1)
	check("..merge limit 2", list("", merge, 2), merge, side)
	check("c1..c2", list(c1, c2, 0), c2)
	check("merge..merge", list(merge, merge, 0))

	res, err := h.client.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: "app", To: c1})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Commits[0]
	if c.Message != "first commit\n\nwith a body" || c.Author != gittest.AuthorName+" <"+gittest.AuthorEmail+">" ||
		!c.Time.AsTime().Equal(gittest.FirstCommitTime()) {
		t.Errorf("commit = %v", c)
	}

	// A commit made after registration is fetched on demand.
	later := src.CommitFile("b", "b\n", "later\n")
	check("merge..later", list(merge, later, 0), later)

	_, err = h.client.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: "app", To: strings.Repeat("ab", 20)})
	if connectCode(err) != connect.CodeNotFound {
		t.Errorf("unknown commit: %v, want not_found", err)
	}
	_, err = h.client.ListCommits(ctx, &sourcev1.ListCommitsRequest{Repository: "app", To: "main"})
	if connectCode(err) != connect.CodeInvalidArgument {
		t.Errorf("to is not a sha: %v, want invalid_argument", err)
	}
}

// A commit run by hand before the poll saw it is not run again by the
// poll, which records it as seen; running it again by hand makes a new run,
// and the poll still adds none.
func TestTriggerRunThenPollMakesOneRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0) // the test polls (PollOnce)
	src, _ := newGitRepo(t, "app", "main", validPipeline)
	h.register(src.Dir)
	next := src.CommitFile("main.go", "package main\n", "add main\n")
	ctx := context.Background()

	run := h.trigger("app", "")
	if run.Commit != next {
		t.Fatalf("manual run of %s, want the new head %s", run.Commit, next)
	}
	h.svc.PollOnce(ctx)
	if runs := h.listRuns("app"); len(runs) != 1 || runs[0].Id != run.Id {
		t.Fatalf("%d runs after the poll, want only the manual one", len(runs))
	}
	got, err := h.client.GetRepository(ctx, &sourcev1.GetRepositoryRequest{Repository: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Repository.LastSeenCommit != next {
		t.Errorf("last seen commit = %s, want the polled head %s", got.Repository.LastSeenCommit, next)
	}

	again := h.trigger("app", "")
	if again.Id == run.Id || again.Commit != next {
		t.Fatalf("second manual run = %v, want a new run of %s", again, next)
	}
	h.svc.PollOnce(ctx)
	if runs := h.listRuns("app"); len(runs) != 2 {
		t.Fatalf("%d runs, want 2 (both by hand)", len(runs))
	}
}

// A pipeline whose conditions ask what changed gets the run's changed
// paths in RunRequested: against the branch's last run's commit, or the
// commit's parent; one that does not ask gets none.
func TestRunRequestedCarriesTheChangedPaths(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	const changedPipeline = `version: 1
build:
  steps:
    - {name: docs, run: make docs, when: 'changed("docs/**")'}
`
	src, _ := newGitRepo(t, "app", "main", changedPipeline)
	src.CommitFile("docs/a.md", "a\n", "docs")
	h.register(src.Dir)

	run := h.trigger("app", "")
	req := payload[*sourceeventsv1.RunRequested](t, h.waitRunEvent(subjectRunRequested, run.Id))
	if got := req.GetChanges(); !got.GetComplete() || strings.Join(got.GetPaths(), " ") != "docs/a.md" {
		t.Errorf("changes of the first run %v, want docs/a.md (against the parent)", got)
	}
	src.CommitFile("main.go", "package main\n", "code")
	src.CommitFile("docs/b.md", "b\n", "more docs")
	run = h.trigger("app", "")
	req = payload[*sourceeventsv1.RunRequested](t, h.waitRunEvent(subjectRunRequested, run.Id))
	if got := req.GetChanges(); !got.GetComplete() || strings.Join(got.GetPaths(), " ") != "docs/b.md main.go" {
		t.Errorf("changes of the second run %v, want docs/b.md main.go (since the last run)", got)
	}
	// A rerun's steps see what the run's saw.
	f := &folding{h: h, run: run, ref: &sourceeventsv1.RepositoryRef{Id: run.RepositoryId, Name: "app", Url: src.Dir}}
	f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_FAILED}, time.Now())
	f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
	rerun, err := h.client.RerunRun(t.Context(), &sourcev1.RerunRunRequest{RunId: run.Id, Failed: true})
	if err != nil {
		t.Fatal(err)
	}
	req = payload[*sourceeventsv1.RunRequested](t, h.waitRunEvent(subjectRunRequested, rerun.GetRun().GetId()))
	if got := req.GetChanges(); strings.Join(got.GetPaths(), " ") != "docs/b.md main.go" || req.GetTrigger() != sourcev1.Trigger_TRIGGER_MANUAL {
		t.Errorf("the rerun's changes %v (trigger %s), want its run's: docs/b.md main.go", got, req.GetTrigger())
	}

	other, _ := newGitRepo(t, "plain", "main", validPipeline)
	h.register(other.Dir)
	run = h.trigger("plain", "")
	if req := payload[*sourceeventsv1.RunRequested](t, h.waitRunEvent(subjectRunRequested, run.Id)); req.GetChanges() != nil {
		t.Errorf("a pipeline without changed() got changes %v", req.GetChanges())
	}
}
