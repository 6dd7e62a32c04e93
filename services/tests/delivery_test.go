package tests_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/steplog"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/services/tests"
	"github.com/sluicehq/sluice/services/tests/domain"
)

// delivery is a message's delivery count, as the consumer passes it.
type delivery uint64

func (d delivery) NumDelivered() uint64 { return uint64(d) }

// MaxDeliver is what deploy/nats declares for the consumer.
func (d delivery) MaxDeliver() int { return 5 }
func (d delivery) Last() bool      { return int(d) >= d.MaxDeliver() }

func TestInfrastructureFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	svc, store := h.plainService()
	api := tests.NewHandler(svc)
	ctx := context.Background()
	// The handler is called directly, not through the auth interceptor:
	// its calls carry an identity as the interceptor would give them.
	apiCtx := auth.WithIdentity(ctx, auth.Identity{Kind: auth.KindService, Name: tests.Name})
	quick := &sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "quick", Run: "echo quick"}}}}

	t.Run("retried, then taken over by the next delivery", func(t *testing.T) {
		t.Parallel()
		repo := newRepo(t)
		runID := h.runOf(repo, quick)
		ev := h.event(t, runID)
		repo.down(t, true)
		err := svc.HandleBuildFinished(ctx, ev, delivery(1))
		if err == nil || !strings.Contains(err.Error(), "gitcheckout: ") {
			t.Fatalf("first delivery with the repository unreachable: %v, want an error to retry", err)
		}
		res, err := api.GetTestRun(apiCtx, &testv1.GetTestRunRequest{RunId: runID})
		if err != nil {
			t.Fatal(err)
		}
		if s := res.GetTestRun().GetStatus(); s != testv1.TestRunStatus_TEST_RUN_STATUS_RUNNING {
			t.Fatalf("status after a failed attempt = %s, want RUNNING", s)
		}
		if st := res.GetTestRun().GetSteps(); len(st) != 1 || st[0].GetName() != "quick" || st[0].GetStatus() != testv1.StepStatus_STEP_STATUS_PENDING {
			t.Errorf("steps of the running test run = %v, want quick PENDING", st)
		}

		repo.down(t, false)
		if err := svc.HandleBuildFinished(ctx, ev, delivery(2)); err != nil {
			t.Fatalf("second delivery: %v", err)
		}
		f := h.events.finished(t, runID)
		if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
			t.Errorf("status = %s (%s), want PASSED", f.GetStatus(), f.GetFailureReason())
		}
		logs, err := api.GetLogs(apiCtx, &testv1.GetLogsRequest{RunId: runID})
		if err != nil {
			t.Fatal(err)
		}
		var text []string
		for _, l := range logs.GetLines() {
			text = append(text, l.GetText())
		}
		joined := strings.Join(text, "\n")
		for _, want := range []string{"attempt 1 failed: gitcheckout: ", ", attempt 2: build ", "--- taking over from a worker that stopped", "quick"} {
			if !strings.Contains(joined, want) {
				t.Errorf("log lacks %q:\n%s", want, joined)
			}
		}
	})

	t.Run("a redelivery waits for the worker still holding the test run", func(t *testing.T) {
		t.Parallel()
		runID := h.run(quick)
		ev := h.event(t, runID)
		// A worker took the event and holds the test run for two more
		// seconds, then stops renewing (it died).
		holder := domain.TestRun{ID: uuid.Must(uuid.NewV7()).String(), RunID: runID, BuildID: "build-" + runID, Commit: h.repo.commit,
			Repository: domain.Repository{ID: "repo-1", Name: "hello", URL: h.repo.url}}
		started, err := events.New(&testeventsv1.TestRunStarted{RunId: runID, TestRunId: holder.ID, Repository: repoRef()}, holder.ID, runID)
		if err != nil {
			t.Fatal(err)
		}
		leaseEnd := time.Now().Add(2 * time.Second)
		if _, outcome, err := store.Claim(ctx, holder, ev.ID, started, leaseEnd.Add(-30*time.Second), leaseEnd); err != nil || outcome != tests.Claimed {
			t.Fatalf("claim: %v %v", outcome, err)
		}
		if err := svc.HandleBuildFinished(ctx, ev, delivery(2)); err != nil {
			t.Fatalf("redelivery: %v", err)
		}
		if time.Now().Before(leaseEnd) {
			t.Errorf("the redelivery took the test run over before the holder's lease ended")
		}
		f := h.events.finished(t, runID)
		if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED || f.GetTestRunId() != holder.ID {
			t.Errorf("TestRunFinished %s of %s, want PASSED of %s", f.GetStatus(), f.GetTestRunId(), holder.ID)
		}
	})

	t.Run("the last delivery ends the test run in ERROR", func(t *testing.T) {
		t.Parallel()
		repo := newRepo(t)
		runID := h.runOf(repo, quick)
		ev := h.event(t, runID)
		repo.down(t, true)
		if err := svc.HandleBuildFinished(ctx, ev, delivery(5)); err != nil {
			t.Fatalf("last delivery: %v, want the event handled", err)
		}
		f := h.events.finished(t, runID)
		if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_ERROR ||
			!strings.HasPrefix(f.GetFailureReason(), "gave up after 5 deliveries: gitcheckout: ") {
			t.Errorf("TestRunFinished %s %q, want ERROR: gave up after 5 deliveries: ...", f.GetStatus(), f.GetFailureReason())
		}
	})

	t.Run("stopping during the last delivery ends the test run in ERROR", func(t *testing.T) {
		t.Parallel()
		slow := &sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "slow", Run: "sleep 30"}}}}
		runID := h.run(slow)
		stopping, stop := context.WithCancel(ctx)
		time.AfterFunc(500*time.Millisecond, stop)
		if err := svc.HandleBuildFinished(stopping, h.event(t, runID), delivery(5)); err != nil {
			t.Fatalf("last delivery: %v, want the event handled", err)
		}
		// JetStream delivers it no more: the run must not stay RUNNING.
		f := h.events.finished(t, runID)
		if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_ERROR || !strings.HasPrefix(f.GetFailureReason(), "gave up after 5 deliveries") {
			t.Errorf("TestRunFinished %s %q, want ERROR", f.GetStatus(), f.GetFailureReason())
		}
		res, err := api.GetTestRun(apiCtx, &testv1.GetTestRunRequest{RunId: runID})
		if err != nil {
			t.Fatal(err)
		}
		if got := steps(res.GetTestRun()); got != "slow:CANCELLED:-1" {
			t.Errorf("steps = %s, want slow CANCELLED", got)
		}
	})
}

func TestClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := servicekittest.OpenDB(t, tests.Migrations(), steplog.Migrations())
	store := tests.NewStore(db)

	runID := uuid.Must(uuid.NewV7()).String()
	candidate := func() domain.TestRun {
		return domain.TestRun{ID: uuid.Must(uuid.NewV7()).String(), RunID: runID, BuildID: "b", Commit: "c",
			Repository: domain.Repository{ID: "r", Name: "hello", URL: "/tmp/hello"}}
	}
	started := func(tr domain.TestRun) events.Event {
		ev, err := events.New(&testeventsv1.TestRunStarted{RunId: runID, TestRunId: tr.ID,
			Repository: repoRef()}, tr.ID, runID)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	t0 := time.Now()
	claim := func(eventID string, now time.Time) (domain.TestRun, tests.ClaimOutcome) {
		t.Helper()
		c := candidate()
		run, outcome, err := store.Claim(ctx, c, eventID, started(c), now, now.Add(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return run, outcome
	}

	first, outcome := claim("event-1", t0)
	if outcome != tests.Claimed || first.Attempt != 1 {
		t.Fatalf("first claim: %v attempt %d, want Claimed attempt 1", outcome, first.Attempt)
	}
	if pending, err := events.Pending(ctx, db); err != nil || pending != 1 {
		t.Errorf("outbox holds %d events (%v), want the TestRunStarted", pending, err)
	}
	if _, outcome := claim("event-2", t0.Add(time.Second)); outcome != tests.HeldByOther {
		t.Errorf("another event while the lease holds: %v, want HeldByOther", outcome)
	}
	if _, outcome := claim("event-1", t0.Add(time.Second)); outcome != tests.HeldForThisEvent {
		t.Errorf("the same event while the lease holds: %v, want HeldForThisEvent", outcome)
	}
	second, outcome := claim("event-2", t0.Add(31*time.Second))
	if outcome != tests.TakenOver || second.Attempt != 2 || second.ID != first.ID {
		t.Fatalf("claim after the lease ended: %v attempt %d id %s, want TakenOver attempt 2 of %s", outcome, second.Attempt, second.ID, first.ID)
	}
	if err := store.RenewLease(ctx, first.ID, 1, t0.Add(time.Minute)); !errors.Is(err, lease.ErrLost) {
		t.Errorf("the first worker's renewal after the takeover: %v; want lease.ErrLost", err)
	}
	if pending, _ := events.Pending(ctx, db); pending != 1 {
		t.Errorf("outbox holds %d events after a takeover, want still 1", pending)
	}
}

func repoRef() *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: "r", Name: "hello", Url: "/tmp/hello"}
}
