package release

import (
	"strings"
	"testing"

	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/services/release/domain"
)

func TestOnlyDeploysThatNeverStartedOrMayRunAgainResume(t *testing.T) {
	t.Parallel()
	rollback, redeploy := domain.Environment{}, domain.Environment{RedeployOnInterrupt: true}
	for _, tt := range []struct {
		d    domain.Deployment
		env  domain.Environment
		want bool
	}{
		{domain.Deployment{}, rollback, true},
		{domain.Deployment{Started: true, Attempts: 1}, rollback, false},
		{domain.Deployment{Started: true, Attempts: 1}, redeploy, true},
		{domain.Deployment{Started: true, Attempts: domain.MaxDeployAttempts - 1}, redeploy, true},
		{domain.Deployment{Started: true, Attempts: domain.MaxDeployAttempts}, redeploy, false},
	} {
		if got := resumes(tt.d, tt.env); got != tt.want {
			t.Errorf("resumes(%+v, redeploy %t) = %t, want %t", tt.d, tt.env.RedeployOnInterrupt, got, tt.want)
		}
	}
}

// A deploy interrupted (its replica died) after which a rollback was
// verified in its environment, once the lock lapsed, was replaced: the
// replica that takes the run over ends it failed without rolling back or
// marking its release bad, and so does every later delivery of the run.
func TestAnInterruptedDeployThatALaterOneReplacedIsNeverRolledBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())                                                                // v0.1.0
	run2, _ := h.release(h.repo.CommitFiles("feat: two", map[string]string{"greeting": "2\n"})) // v0.2.0
	h.release(h.repo.CommitFiles("feat: three", map[string]string{"greeting": "3\n"}))          // v0.3.0
	s := h.replica()
	ctx := t.Context()
	d, err := s.store.RunDeployment(ctx, run2, "staging", false)
	if err != nil {
		t.Fatal(err)
	}
	// As if v0.2.0's replica had died in its deploy command in staging...
	if _, err := s.store.db.ExecContext(ctx, `UPDATE deployments SET status = $1, ended_at = 0 WHERE id = $2`,
		string(domain.DeploymentDeploying), d.ID); err != nil {
		t.Fatal(err)
	}
	// ...and staging were rolled back by hand before its run is handled again.
	if _, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.1.0"}); err != nil {
		t.Fatal(err)
	}
	rel, err := s.store.Release(ctx, d.ReleaseID)
	if err != nil {
		t.Fatal(err)
	}
	st := stage{runID: run2, repo: rel.Repository, log: s.log}
	for delivery := 1; delivery <= 2; delivery++ {
		res, err := s.releaseTo(ctx, st, rel, rel.Environments[0])
		if err != nil || res.failed || !res.newer || !strings.HasPrefix(res.left, "staging got v0.1.0 since, by a rollback") {
			t.Fatalf("delivery %d: releaseTo = %+v, %v; want staging left alone: it got v0.1.0 since", delivery, res, err)
		}
	}
	if got := strings.TrimSpace(h.state("staging", "current")); got != "v0.1.0" {
		t.Fatalf("staging runs %s, want v0.1.0 (the rollback made by hand)", got)
	}
	d, err = s.store.Deployment(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != domain.DeploymentFailed || !d.Superseded {
		t.Fatalf("the interrupted deployment = %s, superseded %t; want FAILED, superseded", d.Status, d.Superseded)
	}
	if rel, err = s.store.Release(ctx, rel.ID); err != nil || rel.Status == domain.ReleaseBad {
		t.Fatalf("release %s is %s (%v); want it not bad", rel.Version, rel.Status, err)
	}
}
