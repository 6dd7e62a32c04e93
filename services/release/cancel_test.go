package release

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/runcancel"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
)

// A run cancelled before its release began releases and deploys nothing:
// its stage ends CANCELLED, saying by whom. The next run releases as
// usual.
func TestACancelledRunIsNotReleased(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start()
	commit := h.initialCommit()
	runID := uuid.Must(uuid.NewV7()).String()

	ev, err := events.New(&sourceeventsv1.RunCancelRequested{
		RunId: runID, Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: repoName, Url: h.repo.Dir}, Commit: commit, RequestedBy: "token t1 (alice)",
	}, runID, runID)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	book := runcancel.New(servicekittest.OpenDBAt(t, h.cfg.WithDefaults().DatabaseURL), time.Second, nil)
	servicekittest.Eventually(t, "the cancellation to be recorded", func() bool {
		_, ok, err := book.Lookup(t.Context(), runID)
		return err == nil && ok
	})

	h.runAs(runID, commit, "main", h.pipeline(), "")
	fin := h.finished(runID)
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_CANCELLED || fin.GetReason() != "cancelled by token t1 (alice)" || fin.GetVersion() != "" {
		t.Errorf("ReleaseFinished %v (%q, version %q), want CANCELLED by alice, no version", fin.GetOutcome(), fin.GetReason(), fin.GetVersion())
	}
	if got := eventsOf[*releaseeventsv1.ReleasePublished](h.events, runID); len(got) != 0 {
		t.Errorf("a cancelled run was released: %v", got)
	}
	_, next := h.release(commit)
	if next.GetVersion() == "" {
		t.Error("the next run made no release")
	}
}
