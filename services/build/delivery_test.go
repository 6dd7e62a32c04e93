package build_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/steplog"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/build/domain"
)

// asService is ctx carrying the build service's own identity, as a call
// through the API would carry its caller's: the service's queries check
// the caller's repositories (auth.CheckRepository).
func asService(ctx context.Context) context.Context {
	return auth.WithIdentity(ctx, auth.Identity{Kind: auth.KindService, Name: build.Name})
}

// delivery is the n-th delivery of an event.
type delivery uint64

func (d delivery) NumDelivered() uint64 { return uint64(d) }

// MaxDeliver is what deploy/nats declares for the consumer.
func (d delivery) MaxDeliver() int { return 5 }
func (d delivery) Last() bool      { return int(d) >= d.MaxDeliver() }

// outboxSubjects are the subjects of the events in db's outbox, in order.
func outboxSubjects(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT subject FROM outbox ORDER BY created_at, id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A build that cannot complete is left RUNNING for a redelivery, except on
// the consumer's last delivery, where it ends FAILED with the reason: after
// that no delivery comes, and the build must not stay RUNNING forever.
func TestLastDeliveryEndsTheBuild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	svc, store, db := h.plainService()
	// The artifact store is gone: storing the artifact fails every time.
	if err := h.js.DeleteObjectStore(t.Context(), artifacts.Bucket); err != nil {
		t.Fatal(err)
	}
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{
		Steps:     []*sourcev1.Step{{Name: "compile", Run: "echo hi > out"}},
		Artifacts: []*sourcev1.ArtifactSpec{{Name: "out", Path: "out"}},
	})
	runID := req.GetRunId()
	ev, err := events.New(req, runID, runID)
	if err != nil {
		t.Fatal(err)
	}

	err = svc.HandleRunRequested(t.Context(), ev, delivery(4))
	if err == nil || errors.Is(err, events.ErrPermanent) {
		t.Fatalf("delivery 4: %v; want a retryable error", err)
	}
	b, err := store.ByRun(t.Context(), runID)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != domain.Running || b.Attempt != 1 || !b.LeaseExpires.IsZero() {
		t.Fatalf("after delivery 4: %s attempt %d lease %v; want RUNNING in attempt 1 with the lease released", b.Status, b.Attempt, b.LeaseExpires)
	}

	if err := svc.HandleRunRequested(t.Context(), ev, delivery(5)); err != nil {
		t.Fatalf("delivery 5: %v; want the build ended and the event acknowledged", err)
	}
	b, err = store.ByRun(t.Context(), runID)
	if err != nil {
		t.Fatal(err)
	}
	const reason = "gave up after 5 attempts: open object store sluice-artifacts: "
	if b.Status != domain.Failed || b.Attempt != 2 || !strings.HasPrefix(b.Failure.Reason, reason) || b.EndTime.IsZero() {
		t.Fatalf("after delivery 5: %s attempt %d reason %q; want FAILED in attempt 2 with %q...", b.Status, b.Attempt, b.Failure.Reason, reason)
	}
	want := []string{
		"sluice.build.build.started", "sluice.build.step.started", "sluice.build.step.finished",
		"sluice.build.build.started", "sluice.build.step.started", "sluice.build.step.finished", "sluice.build.build.finished",
	}
	if got := outboxSubjects(t, db); !slices.Equal(got, want) {
		t.Errorf("outbox %v; want %v", got, want)
	}
	page, err := svc.Logs(asService(t.Context()), runID, "", 1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !page.Complete || !strings.HasPrefix(page.Lines[len(page.Lines)-1].Text, "--- build failed: "+reason) {
		t.Errorf("log complete %v, last line %q; want complete with the failure", page.Complete, page.Lines[len(page.Lines)-1].Text)
	}

	// Any later copy of the event has no effect.
	if err := svc.HandleRunRequested(t.Context(), ev, delivery(1)); err != nil {
		t.Fatal(err)
	}
	if got := outboxSubjects(t, db); len(got) != len(want) {
		t.Errorf("outbox %v after a copy of an ended run's request; want unchanged", got)
	}
}

// A process that is stopping leaves the build RUNNING with its lease
// released, and returns an error so the event is redelivered.
func TestStoppingLeavesTheBuildForTakeover(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	svc, store, db := h.plainService()
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "wait", Run: "echo waiting; sleep 60"}}})
	ev, err := events.New(req, req.GetRunId(), req.GetRunId())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- svc.HandleRunRequested(ctx, ev, delivery(1)) }()
	servicekittest.Eventually(t, "the step to run", func() bool {
		page, err := svc.Logs(asService(t.Context()), req.GetRunId(), "wait", 1, 100)
		return err == nil && slices.ContainsFunc(page.Lines, func(l steplog.Line) bool { return l.Text == "waiting" })
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("handler returned %v; want the cancellation", err)
	}
	b, err := store.ByRun(t.Context(), req.GetRunId())
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != domain.Running || !b.LeaseExpires.IsZero() || b.Steps[0].Status != domain.StepCancelled {
		t.Errorf("build %s lease %v step %s; want RUNNING, lease released, step CANCELLED", b.Status, b.LeaseExpires, b.Steps[0].Status)
	}
	if got := outboxSubjects(t, db); !slices.Equal(got, []string{"sluice.build.build.started", "sluice.build.step.started"}) {
		t.Errorf("outbox %v; want BuildStarted and StepStarted only (a cancelled step is not finished)", got)
	}
}
