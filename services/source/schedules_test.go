package source_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/source"
)

const schedulePipeline = validPipeline + `on:
  schedule:
    - cron: "0 3 * * *"
    - cron: "*/5 * * * *"
      branch: dev
`

// TestSchedules drives on.schedule: a schedule first seen fires at its
// next time, not at once; when due it runs its branch's head (the
// repository's, or the one it names), changed or not, once per firing; a
// firing missed for days makes one run. (Two replicas at once:
// TestSchedulesFireOnceAcrossReplicas.)
func TestSchedules(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, head := newGitRepo(t, "nightly", "main", schedulePipeline)
	dev := src.CommitFile("dev.txt", "dev\n", "on dev\n")
	src.SetRef("refs/heads/dev", dev)
	src.SetRef("refs/heads/main", head)
	h.register(src.Dir)
	ctx := context.Background()
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	scheduled := func() map[string][]string { // branch -> commits of its schedule runs
		out := map[string][]string{}
		for _, r := range h.listRuns("nightly") {
			if r.Trigger != sourcev1.Trigger_TRIGGER_SCHEDULE {
				t.Errorf("run %s was made by %s", r.Id, r.Trigger)
				continue
			}
			out[r.Branch] = append(out[r.Branch], r.Commit)
		}
		return out
	}

	h.svc.ScheduleOnce(ctx, at("2026-12-06T02:58:00Z"))
	h.svc.ScheduleOnce(ctx, at("2026-12-06T02:59:59Z"))
	if runs := h.listRuns("nightly"); len(runs) != 0 {
		t.Fatalf("%d runs before any schedule was due, want none", len(runs))
	}
	h.svc.ScheduleOnce(ctx, at("2026-12-06T03:00:04Z"))
	h.svc.ScheduleOnce(ctx, at("2026-12-06T03:00:09Z"))
	if got := scheduled(); len(got["main"]) != 1 || got["main"][0] != head || len(got["dev"]) != 1 || got["dev"][0] != dev {
		t.Fatalf("schedule runs at 03:00 = %v, want one of main's head %s and one of dev's %s", got, head[:7], dev[:7])
	}

	h.svc.ScheduleOnce(ctx, at("2026-12-06T03:05:02Z"))
	if got := scheduled(); len(got["dev"]) != 2 || len(got["main"]) != 1 {
		t.Fatalf("schedule runs at 03:05 = %v, want a second of dev only", got)
	}

	// Days later, nothing having run meanwhile: one run per schedule, of
	// the same, unchanged heads.
	h.svc.ScheduleOnce(ctx, at("2026-12-09T11:11:11Z"))
	got := scheduled()
	if len(got["main"]) != 2 || got["main"][0] != head || got["main"][1] != head || len(got["dev"]) != 3 {
		t.Fatalf("schedule runs after three days = %v, want one more of each", got)
	}
	runID := h.listRuns("nightly")[0].Id
	if req := payload[*sourceeventsv1.RunRequested](t, h.waitRunEvent(subjectRunRequested, runID)); req.Trigger != sourcev1.Trigger_TRIGGER_SCHEDULE {
		t.Errorf("RunRequested of a schedule's run: trigger %s", req.Trigger)
	}
}

// TestSchedulesFireOnceAcrossReplicas: two source replicas on one
// PostgreSQL database (SQLite serves one replica), their ticks at the same
// moments, make one run per firing.
func TestSchedulesFireOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	db := sqldbtest.URLFor(t, sqldbtest.Postgres)
	replicas := []*harness{
		newHarness(t, 0, func(c *source.Config) { c.DatabaseURL = db }),
		newHarness(t, 0, func(c *source.Config) { c.DatabaseURL = db }),
	}
	src, _ := newGitRepo(t, "nightly", "main", validPipeline+"on:\n  schedule:\n    - cron: \"* * * * *\"\n")
	replicas[0].register(src.Dir)
	ctx := context.Background()
	replicas[1].svc.PollOnce(ctx) // its own mirror, as its poll would fetch it
	start := time.Date(2026, 12, 6, 3, 0, 30, 0, time.UTC)
	for _, r := range replicas {
		r.svc.ScheduleOnce(ctx, start)
	}
	const firings = 5
	for i := range firings {
		now := start.Add(time.Duration(i+1) * time.Minute)
		var wg sync.WaitGroup
		for _, r := range replicas {
			wg.Go(func() { r.svc.ScheduleOnce(ctx, now) })
		}
		wg.Wait()
	}
	if runs := replicas[1].listRuns("nightly"); len(runs) != firings {
		t.Fatalf("%d runs of %d firings on two replicas, want one each", len(runs), firings)
	}
}
