package build_test

import (
	"errors"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/lease"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/build/domain"
)

// The lease decides which worker may work on a build: a live lease keeps
// others out, an expired or released one lets the next worker take over,
// and a worker that was taken over cannot write any more.
func TestStoreLease(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := build.NewStore(servicekittest.OpenDB(t, build.Migrations(), steplog.Migrations()))

	steps := []string{"compile", "test"}
	b := domain.Build{ID: "b1", RunID: "r1", Repository: domain.Repository{ID: "1", Name: "hello", URL: "/tmp/hello"},
		Commit: "c", Branch: "main", CreateTime: time.Now()}
	if created, err := store.Create(ctx, b, steps); err != nil || !created {
		t.Fatalf("Create: %v, %v", created, err)
	}
	b.ID = "b2"
	if created, err := store.Create(ctx, b, steps); err != nil || created {
		t.Fatalf("second Create for the run: %v, %v; want false (one build per run)", created, err)
	}

	seen, err := store.ByRun(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if seen.Status != domain.Queued || seen.Attempt != 0 || len(seen.Steps) != 2 || seen.Steps[0].Status != domain.StepPending {
		t.Fatalf("new build %+v; want QUEUED, attempt 0, steps PENDING", seen)
	}
	now := time.Now()
	a := build.Lease{BuildID: "b1", Attempt: 1, WorkerID: "a", TTL: time.Minute}
	if ok, err := store.Claim(ctx, seen, a, now, steps); err != nil || !ok {
		t.Fatalf("a claims: %v, %v", ok, err)
	}
	// b saw the build before a claimed it: too late.
	bl := build.Lease{BuildID: "b1", Attempt: 1, WorkerID: "b", TTL: time.Minute}
	if ok, err := store.Claim(ctx, seen, bl, now, steps); err != nil || ok {
		t.Fatalf("b claims with a stale view: %v, %v; want false", ok, err)
	}
	held, err := store.ByRun(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if held.Claimable(now.Add(30 * time.Second)) {
		t.Fatal("claimable while a's lease lasts")
	}
	if err := store.StepStarted(ctx, a, 0, now); err != nil {
		t.Fatalf("a writes: %v", err)
	}

	// a stops renewing; after the lease, b takes over.
	later := now.Add(2 * time.Minute)
	if !held.Claimable(later) {
		t.Fatal("not claimable after a's lease expired")
	}
	bl.Attempt = 2
	if ok, err := store.Claim(ctx, held, bl, later, steps); err != nil || !ok {
		t.Fatalf("b takes over: %v, %v", ok, err)
	}
	taken, err := store.Get(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if taken.Attempt != 2 || taken.WorkerID != "b" || taken.Steps[0].Status != domain.StepPending {
		t.Errorf("after takeover %+v; want attempt 2 by b with steps reset", taken)
	}
	for name, write := range map[string]func() error{
		"StepStarted": func() error { return store.StepStarted(ctx, a, 1, now) },
		"RenewLease":  func() error { return store.RenewLease(ctx, a) },
		"Finish": func() error {
			return store.Finish(ctx, a, "run-1", build.Outcome{Status: domain.Succeeded, EndTime: now})
		},
	} {
		if err := write(); !errors.Is(err, lease.ErrLost) {
			t.Errorf("a's %s after the takeover: %v; want lease.ErrLost", name, err)
		}
	}

	// b releases (it is stopping): claimable at once, without waiting.
	if err := store.ReleaseLease(ctx, bl); err != nil {
		t.Fatal(err)
	}
	released, err := store.Get(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if !released.Claimable(time.Now()) {
		t.Error("not claimable after the lease was released")
	}

	if _, err := store.Get(ctx, "nope"); !errors.Is(err, apierror.ErrNotFound) {
		t.Errorf("Get(unknown): %v; want ErrNotFound", err)
	}
}
