package tests

import (
	"log/slog"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
)

// The lease on a test run is kept with a Lapse (executor's
// TestLeaseLapseStopsTheStepBeforeTheLeaseLapses shows a step stopped in
// time with it): a worker cut off from its database stops its step before
// another may take the test run over, and not for one failed renewal.
func TestLeaseOptionsStopAWorkerCutOffBeforeTheLeaseLapses(t *testing.T) {
	since := time.Now().Add(-time.Second)
	o := (&Service{}).leaseOptions(slog.New(slog.DiscardHandler), since)
	if o.Lapse != executor.LeaseLapse(leaseDuration, 0) || o.Lapse+executor.StopTime(0) > leaseDuration {
		t.Errorf("Lapse %s; want the lease duration %s less a step's stop time %s", o.Lapse, leaseDuration, executor.StopTime(0))
	}
	if o.Lapse < 2*o.Every {
		t.Errorf("Lapse %s; want at least two heartbeats (%s)", o.Lapse, o.Every)
	}
	if !o.Since.Equal(since) {
		t.Errorf("Since %s; want the claim's time %s", o.Since, since)
	}
}
