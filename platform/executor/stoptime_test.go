package executor_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/lease"
)

// cutOffLease is a lease in a store that stops answering once cut: it
// remembers when the last renewal that succeeded began, from which the
// store kept the lease for its duration.
type cutOffLease struct {
	cut    atomic.Bool
	renewd atomic.Int64 // unix nanoseconds
}

func (l *cutOffLease) Renew(ctx context.Context) error {
	begun := time.Now()
	if l.cut.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	l.renewd.Store(begun.UnixNano())
	return nil
}

func (l *cutOffLease) Release(context.Context) error { return nil }

// A worker that keeps its lease with Lapse LeaseLapse(d, grace) and whose
// renewals fail has stopped its step, even one that ignores SIGTERM,
// before the lease may lapse (d after the last renewal that succeeded),
// when another worker may take the job over.
func TestLeaseLapseStopsTheStepBeforeTheLeaseLapses(t *testing.T) {
	const grace = 300 * time.Millisecond
	d := executor.StopTime(grace) + 600*time.Millisecond
	l := &cutOffLease{}
	claimed := time.Now()
	l.renewd.Store(claimed.UnixNano())
	work, kept := lease.Keep(context.Background(), l, lease.Options{Every: 100 * time.Millisecond, Lapse: executor.LeaseLapse(d, grace), Since: claimed})
	defer kept.Stop()

	dir := t.TempDir()
	started := filepath.Join(dir, "started")
	ran := make(chan executor.Result, 1)
	go func() {
		res, err := (&executor.Local{KillGrace: grace}).Run(work, executor.Spec{
			Name: t.Name(), Dir: dir, Command: `trap '' TERM; touch started; sleep 30`,
		})
		if err != nil {
			t.Error(err)
		}
		ran <- res
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the step did not start")
		}
	}
	time.Sleep(300 * time.Millisecond) // renewals that succeed keep the step going
	l.cut.Store(true)
	select {
	case res := <-ran:
		lapses := time.Unix(0, l.renewd.Load()).Add(d)
		if ended := time.Now(); !ended.Before(lapses) {
			t.Errorf("the step ended %s after the lease may have lapsed", ended.Sub(lapses))
		}
		if !res.Cancelled {
			t.Errorf("result %+v; want the step cancelled", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the step goes on although no renewal succeeded")
	}
}
