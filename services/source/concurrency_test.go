package source_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source"
)

// concurrencyPipeline is validPipeline with a concurrency section.
func concurrencyPipeline(section string) string {
	return validPipeline + "concurrency:\n" + section
}

// requested reports whether run's RunRequested has been published.
func (h *harness) requested(runID string) bool {
	h.t.Helper()
	return len(h.runEvents(subjectRunRequested, runID)) > 0
}

// endRun ends run cancelled through its build's events, as the build
// service would after a cancel.
func endRun(h *harness, run *sourcev1.Run, url string) {
	h.t.Helper()
	f := &folding{h: h, run: run, ref: repoRef(run, url)}
	f.buildStarted(time.Now())
	f.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_FAILED, FailureReason: "compile failed"}, time.Now())
	f.waitStatus(sourcev1.RunStatus_RUN_STATUS_FAILED)
}

// A branch group with limit 1 lets one run of the branch be active: the
// next waits (queued, no RunRequested, shown as waiting) until it ends;
// another branch's run is not held back, however many wait on the first.
func TestConcurrencyGroupHoldsTheBranchsNextRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	g, _ := newGitRepo(t, "app", "main", concurrencyPipeline("  group: branch\n"))
	repo := h.register(g.Dir)

	first := h.trigger("app", "")
	h.waitRunEvent(subjectRunRequested, first.Id)
	if got := h.getRun(first.Id); got.GetAdmitTime() == nil || got.GetConcurrencyGroup() != "branch main" {
		t.Fatalf("first run: admitted at %v, group %q", got.GetAdmitTime(), got.GetConcurrencyGroup())
	}
	second := h.trigger("app", "")
	// More runs wait on main than one admission pass reads of a group:
	// they do not hide another group's run.
	for range 120 {
		h.trigger("app", "")
	}
	g.SetRef("refs/heads/feature", g.CommitFile("f.txt", "f\n", "on feature"))
	other := h.trigger("app", "feature")
	h.waitRunEvent(subjectRunRequested, other.Id)
	if h.requested(second.Id) {
		t.Fatal("the branch's second run was let start while its first was active")
	}
	if got := h.getRun(second.Id); got.GetAdmitTime() != nil || got.GetStatus() != sourcev1.RunStatus_RUN_STATUS_QUEUED {
		t.Fatalf("the waiting run: %s, admitted at %v", got.GetStatus(), got.GetAdmitTime())
	}

	endRun(h, first, repo.Url)
	h.waitRunEvent(subjectRunRequested, second.Id)
	if got := h.getRun(second.Id); got.GetAdmitTime() == nil {
		t.Fatal("the second run was let start but says it was not")
	}
}

// With cancel_superseded, a newer run of the branch cancels the older
// ones: an active one through RunCancelRequested (it ends when its stage
// stops), a waiting one at once, before it started. The newest starts
// once the active one ended.
func TestANewerRunCancelsTheSupersededOnes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	g, _ := newGitRepo(t, "app", "main", concurrencyPipeline("  group: branch\n  cancel_superseded: true\n"))
	repo := h.register(g.Dir)

	first := h.trigger("app", "")
	h.waitRunEvent(subjectRunRequested, first.Id)
	g.CommitFile("a.txt", "a\n", "second commit")
	second := h.trigger("app", "")
	req := payload[*sourceeventsv1.RunCancelRequested](t, h.waitRunEvent(subjectRunCancelRequested, first.Id))
	if !strings.Contains(req.GetRequestedBy(), second.Id) {
		t.Errorf("RunCancelRequested by %q; want it to name the newer run %s", req.GetRequestedBy(), second.Id)
	}
	if h.requested(second.Id) {
		t.Fatal("the newer run was let start while the one it supersedes was still active")
	}

	g.CommitFile("b.txt", "b\n", "third commit")
	third := h.trigger("app", "")
	f2 := &folding{h: h, run: second, ref: repoRef(second, repo.Url)}
	ended := f2.waitStatus(sourcev1.RunStatus_RUN_STATUS_CANCELLED)
	if !strings.Contains(ended.GetFailureReason(), third.Id) || !strings.HasSuffix(ended.GetFailureReason(), "before it started") {
		t.Errorf("the waiting superseded run's reason: %q", ended.GetFailureReason())
	}
	for _, st := range ended.GetStages() {
		if st.GetStatus() != sourcev1.StageStatus_STAGE_STATUS_SKIPPED {
			t.Errorf("stage %s of a run cancelled before it started: %s", st.GetName(), st.GetStatus())
		}
	}
	if fin := payload[*sourceeventsv1.RunFinished](t, h.waitRunEvent(subjectRunFinished, second.Id)); fin.GetStatus() != sourcev1.RunStatus_RUN_STATUS_CANCELLED {
		t.Errorf("RunFinished of the waiting superseded run: %s", fin.GetStatus())
	}
	if h.requested(second.Id) || len(h.runEvents(subjectRunCancelRequested, second.Id)) > 0 {
		t.Error("a run cancelled before it started was published to the stages")
	}

	// The first run's build stops; the newest starts.
	f1 := &folding{h: h, run: first, ref: repoRef(first, repo.Url)}
	f1.buildStarted(time.Now())
	f1.buildFinished(&buildeventsv1.BuildFinished{Status: buildv1.BuildStatus_BUILD_STATUS_CANCELLED, FailureReason: "cancelled by " + req.GetRequestedBy()}, time.Now())
	f1.waitStatus(sourcev1.RunStatus_RUN_STATUS_CANCELLED)
	h.waitRunEvent(subjectRunRequested, third.Id)
}

// CancelRun ends a run that waits to start at once.
func TestCancellingAWaitingRunEndsItAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	g, _ := newGitRepo(t, "app", "main", concurrencyPipeline("  group: repository\n"))
	h.register(g.Dir)
	first := h.trigger("app", "")
	h.waitRunEvent(subjectRunRequested, first.Id)
	waiting := h.trigger("app", "")

	res, err := h.client.CancelRun(t.Context(), &sourcev1.CancelRunRequest{RunId: waiting.Id})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.GetRun(); got.GetStatus() != sourcev1.RunStatus_RUN_STATUS_CANCELLED || !strings.HasSuffix(got.GetFailureReason(), "before it started") {
		t.Fatalf("after CancelRun: %s %q", got.GetStatus(), got.GetFailureReason())
	}
	h.waitRunEvent(subjectRunFinished, waiting.Id)
	if h.requested(waiting.Id) {
		t.Error("the cancelled waiting run was published to the stages")
	}
}

// A burst of runs of one repository waits under the limits, and another
// repository's first run is let start at the first free place, ahead of
// the burst's older waiting runs (the repository with the fewest active
// runs goes first). The burst's runs start in the order they were made.
func TestFairQueueUnderABurst(t *testing.T) {
	t.Parallel()
	const burst, limit = 200, 2
	h := newHarness(t, 0, func(c *source.Config) { c.MaxActiveRunsPerRepository = limit; c.MaxActiveRuns = limit })
	busy, _ := newGitRepo(t, "busy", "main", validPipeline)
	quiet, _ := newGitRepo(t, "quiet", "main", validPipeline)
	busyRepo := h.register(busy.Dir)
	quietRepo := h.register(quiet.Dir)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range burst / 8 {
				if _, err := h.client.TriggerRun(context.Background(), &sourcev1.TriggerRunRequest{Repository: "busy"}); err != nil {
					t.Errorf("TriggerRun: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// admitted lists the burst's runs let start, and checks that none was
	// let start before an older one. (The first were let start while the
	// burst's runs were being made side by side, when an older run may
	// not have been committed yet: they are not checked.)
	var early map[string]bool
	admitted := func() []*sourcev1.Run {
		var in []*sourcev1.Run
		var newestIn, oldestOut time.Time
		for _, r := range h.listAllRuns("busy") {
			at := r.GetCreateTime().AsTime()
			if r.GetAdmitTime() != nil {
				in = append(in, r)
				if !early[r.Id] && at.After(newestIn) {
					newestIn = at
				}
			} else if oldestOut.IsZero() || at.Before(oldestOut) {
				oldestOut = at
			}
		}
		if early != nil && !oldestOut.IsZero() && newestIn.After(oldestOut) {
			t.Errorf("a run of the burst made at %s was let start before one made at %s", newestIn, oldestOut)
		}
		return in
	}
	servicekittest.Eventually(t, "the burst's first runs start", func() bool { return len(admitted()) == limit })
	first := admitted() // early is nil: not checked yet
	early = map[string]bool{}
	for _, r := range first {
		early[r.Id] = true
	}

	quietRun := h.trigger("quiet", "")
	time.Sleep(200 * time.Millisecond)
	if h.requested(quietRun.Id) {
		t.Fatal("a run was let start beyond max-active-runs")
	}
	active := admitted()
	endRun(h, active[0], busyRepo.Url)
	h.waitRunEvent(subjectRunRequested, quietRun.Id)
	if got := admitted(); len(got) != limit {
		t.Fatalf("%d runs of the burst let start after one ended; want %d: the other repository's run goes first", len(got), limit)
	}

	// The places that free up next go to the burst, oldest first.
	endRun(h, quietRun, quietRepo.Url)
	endRun(h, active[1], busyRepo.Url)
	servicekittest.Eventually(t, "the burst's next runs start", func() bool { return len(admitted()) == 2*limit })
}

// listAllRuns lists every run of repo, page after page.
func (h *harness) listAllRuns(repo string) []*sourcev1.Run {
	h.t.Helper()
	var out []*sourcev1.Run
	token := ""
	for {
		res, err := h.client.ListRuns(context.Background(), &sourcev1.ListRunsRequest{Repository: repo, PageSize: 1000, PageToken: token})
		if err != nil {
			h.t.Fatalf("ListRuns(%s): %v", repo, err)
		}
		out = append(out, res.GetRuns()...)
		if token = res.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// Runs of a cancel_superseded group made at once leave one: the newest.
// Every other ends cancelled or is asked to, even one whose transaction
// committed after a newer run's (it finds that run and supersedes
// itself).
func TestRunsMadeAtOnceLeaveTheNewest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	g, _ := newGitRepo(t, "app", "main", concurrencyPipeline("  group: branch\n  cancel_superseded: true\n"))
	h.register(g.Dir)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 4 {
				if _, err := h.client.TriggerRun(context.Background(), &sourcev1.TriggerRunRequest{Repository: "app"}); err != nil {
					t.Errorf("TriggerRun: %v", err)
				}
			}
		})
	}
	wg.Wait()
	runs := h.listAllRuns("app")
	var newest *sourcev1.Run
	var left []string
	for _, r := range runs {
		if newest == nil || r.GetCreateTime().AsTime().After(newest.GetCreateTime().AsTime()) {
			newest = r
		}
		if r.GetStatus() != sourcev1.RunStatus_RUN_STATUS_CANCELLED && r.GetCancelRequestTime() == nil {
			left = append(left, r.Id)
		}
	}
	if len(runs) != 32 || len(left) != 1 || left[0] != newest.Id {
		t.Fatalf("%d runs; not superseded: %v, want only the newest, %s", len(runs), left, newest.GetId())
	}
}

// CancelRun with force ends an admitted run that no stage answers for at
// once (its stages are still asked to stop), which frees its place in its
// group: the next run starts. A stage that reports afterwards changes
// nothing.
func TestForceCancelEndsAStuckRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	g, _ := newGitRepo(t, "app", "main", concurrencyPipeline("  group: branch\n"))
	repo := h.register(g.Dir)
	stuck := h.trigger("app", "")
	h.waitRunEvent(subjectRunRequested, stuck.Id)
	next := h.trigger("app", "")

	res, err := h.client.CancelRun(t.Context(), &sourcev1.CancelRunRequest{RunId: stuck.Id, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	got := res.GetRun()
	if got.GetStatus() != sourcev1.RunStatus_RUN_STATUS_CANCELLED || !strings.Contains(got.GetFailureReason(), "forced") {
		t.Fatalf("after a forced cancel: %s %q", got.GetStatus(), got.GetFailureReason())
	}
	h.waitRunEvent(subjectRunCancelRequested, stuck.Id)
	h.waitRunEvent(subjectRunFinished, stuck.Id)
	h.waitRunEvent(subjectRunRequested, next.Id)

	// The build turns up after all: the run stays as it ended.
	f := &folding{h: h, run: stuck, ref: repoRef(stuck, repo.Url)}
	f.buildStarted(time.Now())
	f.buildSucceeded(time.Now())
	h.waitConsumed()
	if after := h.getRun(stuck.Id); after.GetStatus() != sourcev1.RunStatus_RUN_STATUS_CANCELLED || len(h.runEvents(subjectRunFinished, stuck.Id)) != 1 {
		t.Errorf("after a late build: %s, %d RunFinished", after.GetStatus(), len(h.runEvents(subjectRunFinished, stuck.Id)))
	}
}
