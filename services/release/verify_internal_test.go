package release

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/services/release/domain"
)

// slowFailure is a verify command that fails after a while, and records
// the timeout each run was given.
type slowFailure struct {
	mu       sync.Mutex
	timeouts []time.Duration
}

func (f *slowFailure) Run(ctx context.Context, spec executor.Spec) (executor.Result, error) {
	f.mu.Lock()
	f.timeouts = append(f.timeouts, spec.Timeout)
	f.mu.Unlock()
	const takes = 600 * time.Millisecond
	if spec.Timeout < takes {
		time.Sleep(spec.Timeout)
		return executor.Result{ExitCode: -1, TimedOut: true}, nil
	}
	time.Sleep(takes)
	return executor.Result{ExitCode: 1}, nil
}

// A verification does not start a run it has no whole interval left for:
// such a run would be cut short and its "did not finish" would hide the
// real failure of the run before it.
func TestVerifyStartsNoRunItCannotFinish(t *testing.T) {
	t.Parallel()
	db := servicekittest.OpenDB(t, Migrations(), steplog.Migrations())
	w, err := steplog.New(db, steplog.Limits{}).Writer(t.Context(), "r1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Close(context.Background()) }()
	exec := &slowFailure{}
	s := &Service{exec: exec}
	env := domain.Environment{Name: "staging", Verify: domain.Verify{Command: "check"}}
	// First run 0–0.6 s, the next after the 1 s interval at 1.6 s, with
	// 0.4 s of the 2 s left: not enough.
	_, err = s.verifyCommand(t.Context(), env, t.TempDir(), commandEnv{}, 2*time.Second, logTo{w: w, deploy: "deploy:staging", verify: "verify:staging"})
	if err == nil || !strings.Contains(err.Error(), "exited with code 1") {
		t.Fatalf("verify: %v; want the last real run's failure", err)
	}
	for i, d := range exec.timeouts {
		if i > 0 && d < commandVerifyInterval {
			t.Errorf("run %d was started with %s left", i+1, d)
		}
	}
}
