package executor

import "time"

// StopTime is the longest a step that Local runs with kill grace
// (DefaultKillGrace when 0) takes to end once its context ended: SIGTERM,
// SIGKILL after the grace, and 2 s for the process group to be reaped and
// the worker to see it.
func StopTime(grace time.Duration) time.Duration {
	if grace <= 0 {
		grace = DefaultKillGrace
	}
	return grace + 2*time.Second
}

// LeaseLapse is lease.Options.Lapse for a worker that runs steps with kill
// grace under a lease that a renewal keeps for d: once no renewal
// succeeded for d less StopTime(grace), the worker stops its step, which
// has then ended before another worker may take the job over. d must
// exceed StopTime(grace) by more than a heartbeat, or the work stops
// before its first renewal.
func LeaseLapse(d, grace time.Duration) time.Duration { return d - StopTime(grace) }
