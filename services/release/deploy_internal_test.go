package release

import (
	"testing"

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
