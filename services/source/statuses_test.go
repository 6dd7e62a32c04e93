package source_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

const subjectCommitStatus = "sluice.source.commitstatus.changed"

// statusLines are a run's CommitStatusChanged events, one line each:
// "context state description #sequence".
func (h *harness) statusLines(runID string) []string {
	h.t.Helper()
	var out []string
	for _, ev := range h.runEvents(subjectCommitStatus, runID) {
		p := payload[*sourceeventsv1.CommitStatusChanged](h.t, ev)
		state := strings.ToLower(strings.TrimPrefix(p.GetState().String(), "COMMIT_STATUS_STATE_"))
		out = append(out, fmt.Sprintf("%s %s %s #%d", p.GetContext(), state, p.GetDescription(), p.GetSequence()))
	}
	return out
}

func (h *harness) registerOnForge(dir string) *sourcev1.Repository {
	h.t.Helper()
	res, err := h.client.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{
		Url:   dir,
		Forge: &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITEA, Url: "http://127.0.0.1:3000", Project: "acme/app"},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return res.GetRepository()
}

// A run on a forge publishes its commit status as it goes, per run or per
// stage, each change once, in order; a repository without a forge
// publishes none.
func TestCommitStatuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

	waitLines := func(runID string, n int) []string {
		t.Helper()
		var lines []string
		servicekittest.Eventually(t, fmt.Sprintf("%d commit statuses of run %s", n, runID), func() bool {
			lines = h.statusLines(runID)
			return len(lines) >= n
		})
		return lines
	}
	failTests := func(f *folding) {
		f.buildStarted(t0)
		f.buildSucceeded(t0.Add(time.Minute))
		f.testFinished(&testeventsv1.TestRunFinished{Status: testv1.TestRunStatus_TEST_RUN_STATUS_FAILED,
			Counts: &testv1.Counts{Passed: 9, Failed: 3}}, t0.Add(2*time.Minute))
		f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
	}

	t.Run("per run", func(t *testing.T) {
		src, _ := newGitRepo(t, "app", "main", validPipeline)
		repo := h.registerOnForge(src.Dir)
		run := h.trigger("app", "")
		f := &folding{h: h, run: run, ref: repoRef(run, repo.GetUrl())}
		if got := waitLines(run.Id, 1); got[0] != "sluice pending queued #1" {
			t.Fatalf("first status %q", got[0])
		}
		failTests(f)
		h.outboxBarrier("app")
		got := h.statusLines(run.Id)
		// The build and test streams are folded independently: what comes
		// between the first and the last status may differ, but each is
		// a change, in sequence.
		if len(got) < 3 || got[0] != "sluice pending queued #1" || got[len(got)-1] != fmt.Sprintf("sluice failure test: 9 passed, 3 failed, 0 skipped #%d", len(got)) {
			t.Errorf("statuses:\n%s", strings.Join(got, "\n"))
		}
		for i := 1; i < len(got); i++ {
			if seqOf(got[i]) != i+1 || got[i][:strings.LastIndex(got[i], "#")] == got[i-1][:strings.LastIndex(got[i-1], "#")] {
				t.Errorf("status %d %q after %q: not a change in sequence", i, got[i], got[i-1])
			}
		}
		last := got[len(got)-1]

		// A second run of the commit speaks for it from now on, with
		// higher sequences; a late event of the first changes nothing.
		again := h.trigger("app", run.Commit)
		first := waitLines(again.Id, 1)[0]
		if !strings.HasPrefix(first, "sluice pending queued #") || seqOf(first) <= seqOf(last) {
			t.Errorf("the rerun's first status %q after %q", first, last)
		}
		h.publish(&testeventsv1.TestRunStarted{RunId: run.Id, TestRunId: "t-late", Repository: f.ref}, "t-late", run.Id, t0.Add(time.Hour))
		h.waitConsumed()
		h.outboxBarrier("app")
		if n := len(h.statusLines(run.Id)); n != len(got) {
			t.Errorf("a late event of the older run published %d statuses more", n-len(got))
		}
	})

	t.Run("per stage", func(t *testing.T) {
		src, _ := newGitRepo(t, "staged", "main", validPipeline+"statuses: stages\n")
		res, err := h.client.CreateRepository(context.Background(), &sourcev1.CreateRepositoryRequest{
			Url:   src.Dir,
			Forge: &sourcev1.Forge{Kind: sourcev1.ForgeKind_FORGE_KIND_GITHUB, Url: "https://github.com", Project: "acme/staged"},
		})
		if err != nil {
			t.Fatal(err)
		}
		run := h.trigger("staged", "")
		f := &folding{h: h, run: run, ref: repoRef(run, res.GetRepository().GetUrl())}
		failTests(f)
		h.outboxBarrier("staged")
		final := map[string]string{}
		for _, l := range h.statusLines(run.Id) {
			ctx, rest, _ := strings.Cut(l, " ")
			final[ctx] = rest[:strings.LastIndex(rest, " #")]
		}
		want := map[string]string{
			"sluice/build":   "success passed",
			"sluice/test":    "failure 9 passed, 3 failed, 0 skipped",
			"sluice/release": "cancelled skipped: the test stage failed",
		}
		for ctx, w := range want {
			if final[ctx] != w {
				t.Errorf("%s: %q, want %q (all: %v)", ctx, final[ctx], w, final)
			}
		}
		if len(final) != 3 {
			t.Errorf("contexts %v", final)
		}
	})

	t.Run("no forge", func(t *testing.T) {
		src, _ := newGitRepo(t, "plain", "main", validPipeline)
		h.register(src.Dir)
		run := h.trigger("plain", "")
		f := &folding{h: h, run: run, ref: repoRef(run, src.Dir)}
		f.buildStarted(t0)
		f.buildFinished(&buildeventsv1.BuildFinished{}, t0)
		h.outboxBarrier("plain")
		if got := h.statusLines(run.Id); len(got) != 0 {
			t.Errorf("statuses of a repository without a forge: %v", got)
		}
	})
}

func seqOf(line string) int {
	var n int
	_, _ = fmt.Sscanf(line[strings.LastIndex(line, "#")+1:], "%d", &n)
	return n
}
