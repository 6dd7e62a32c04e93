package domain_test

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/services/build/domain"
)

func TestFailureReasons(t *testing.T) {
	t.Parallel()
	if got := domain.StepExited("compile", 2, nil).Reason; got != `step "compile" exited with code 2` {
		t.Errorf("exited: %q", got)
	}
	if got := domain.StepTimeout("compile", 5*time.Minute, nil).Reason; got != `step "compile" timed out after 5m0s` {
		t.Errorf("timeout: %q", got)
	}
	if got := domain.ArtifactMissing(domain.ArtifactSpec{Name: "hello", Path: "bin/hello"}).Reason; got != `artifact "hello": bin/hello not found` {
		t.Errorf("missing artifact: %q", got)
	}
	if (domain.Failure{}).Failed() {
		t.Error("zero failure counts as failed")
	}
}

func TestClaimable(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, tc := range []struct {
		b    domain.Build
		want bool
	}{
		{domain.Build{Status: domain.Queued}, true},
		{domain.Build{Status: domain.Running, LeaseExpires: now.Add(time.Second)}, false},
		{domain.Build{Status: domain.Running, LeaseExpires: now.Add(-time.Second)}, true},
		{domain.Build{Status: domain.Running}, true}, // released
		{domain.Build{Status: domain.Succeeded}, false},
		{domain.Build{Status: domain.Failed}, false},
	} {
		if got := tc.b.Claimable(now); got != tc.want {
			t.Errorf("%s lease %v: claimable %v; want %v", tc.b.Status, tc.b.LeaseExpires, got, tc.want)
		}
	}
}

func TestCommandSummary(t *testing.T) {
	t.Parallel()
	if got := domain.CommandSummary("\n  mkdir -p bin\n go build ./...\n"); got != "mkdir -p bin" {
		t.Errorf("summary %q; want the first line", got)
	}
}
