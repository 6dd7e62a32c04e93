package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// The fold rules. Other services' events arrive at least once and in any
// order across streams, so every rule is monotonic: a stage only moves
// forward (pending, running, then a terminal status) and a run's end state
// never changes. Each method reports whether it changed the run.

// StartStage records that a stage is running. at is when it started, or
// zero when the event does not tell (a step finished, for instance); a
// known start time fills in a missing one even after the stage ended.
func (r *Run) StartStage(name string, at time.Time) bool {
	s := r.Stage(name)
	if s == nil {
		return false
	}
	changed := false
	if s.StartedAt.IsZero() && !at.IsZero() {
		s.StartedAt = at
		changed = true
	}
	if s.Status == StagePending {
		s.Status = StageRunning
		changed = true
	}
	return r.markRunning() || changed
}

// markRunning moves a queued run to running.
func (r *Run) markRunning() bool {
	if r.Status != RunQueued {
		return false
	}
	r.Status = RunRunning
	return true
}

// StageOutcome is how a stage ended.
type StageOutcome struct {
	// Status is succeeded, failed or skipped.
	Status StageStatus
	At     time.Time
	// Reason says why the stage failed or was skipped.
	Reason       string
	FailedStep   string
	ExitCode     int
	LastLogLines []string
	// Detail, when set, replaces the stage's detail.
	Detail string
	// Cancelled makes a failed stage cancelled, and the run with it.
	Cancelled bool
}

// FinishStage records a stage's end, unless the stage already ended. A
// failed stage fails the run (or cancels it) and skips the stages after it
// that have not started. The run succeeds once every stage has succeeded or
// been skipped (a skipped release counts as success), whichever stage's end
// comes last: source consumes each stage's stream on its own, so a release's
// end may be folded before the build's events that came long before it, and
// a run that ended then would be final with its build still pending, without
// its start time (and WatchRun would end on that).
func (r *Run) FinishStage(name string, o StageOutcome) bool {
	s := r.Stage(name)
	if s == nil || s.Status.Terminal() || !o.Status.Terminal() {
		return false
	}
	s.Status = o.Status
	if o.Cancelled {
		s.Status = StageCancelled
	}
	s.EndedAt = o.At
	s.Reason = o.Reason
	s.FailedStep = o.FailedStep
	s.ExitCode = o.ExitCode
	s.LastLogLines = slices.Clone(o.LastLogLines)
	if o.Detail != "" {
		s.Detail = o.Detail
	}
	r.markRunning()
	if o.Status != StageFailed {
		r.succeedIfDone()
		return true
	}
	verb := "failed"
	status := RunFailed
	if o.Cancelled {
		verb, status = "was cancelled", RunCancelled
	}
	r.skipAfter(name, fmt.Sprintf("the %s stage %s", name, verb))
	reason := name + " " + verb
	switch {
	case o.Cancelled && o.Reason != "":
		// "cancelled by token … (…)" says it all; the stage is named after it.
		reason = o.Reason + ", in the " + name + " stage"
	case o.Reason != "":
		reason += ": " + strings.TrimPrefix(o.Reason, reason+": ")
	}
	r.End(status, reason, o.At)
	return true
}

// succeedIfDone ends the run as succeeded when every stage succeeded or was
// skipped, at the latest stage end.
func (r *Run) succeedIfDone() {
	var at time.Time
	for _, s := range r.Stages {
		if s.Status != StageSucceeded && s.Status != StageSkipped {
			return
		}
		if s.EndedAt.After(at) {
			at = s.EndedAt
		}
	}
	r.End(RunSucceeded, "", at)
}

// skipAfter skips the stages after name that have not started.
func (r *Run) skipAfter(name, reason string) {
	after := false
	for i := range r.Stages {
		s := &r.Stages[i]
		if after && s.Status == StagePending {
			s.Status = StageSkipped
			s.Reason = reason
		}
		if s.Name == name {
			after = true
		}
	}
}

// AddStageDetail appends a sentence to a stage's detail (deployments,
// rollbacks) and counts as a sign that the stage is running.
func (r *Run) AddStageDetail(name, text string) bool {
	s := r.Stage(name)
	if s == nil || text == "" {
		return false
	}
	if s.Detail == "" {
		s.Detail = text
	} else {
		s.Detail += "; " + text
	}
	r.StartStage(name, time.Time{})
	return true
}

// SetReleaseVersion records the released version once.
func (r *Run) SetReleaseVersion(v string) bool {
	if v == "" || r.ReleaseVersion != "" {
		return false
	}
	r.ReleaseVersion = v
	return true
}

// End moves the run to a final status, unless it already has one. It
// reports whether the run ended now.
func (r *Run) End(status RunStatus, reason string, at time.Time) bool {
	if r.Status.Final() || !status.Final() {
		return false
	}
	r.Status = status
	r.FailureReason = reason
	r.EndedAt = at
	return true
}

// TestCounts formats test counts as stage detail.
func TestCounts(passed, failed, skipped int) string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", passed, failed, skipped)
}

// StepFailure describes a failed step when the event gives no text.
func StepFailure(step string, exitCode int) string {
	switch {
	case step == "":
		return ""
	case exitCode < 0:
		return fmt.Sprintf("step %q was killed", step)
	default:
		return fmt.Sprintf("step %q exited with code %d", step, exitCode)
	}
}

// RerunStage is the stage a rerun of the ended run r starts with when
// only what failed runs again: the first stage that failed or was
// cancelled (StageBuild when none did: a run whose pipeline file was
// invalid fails before any stage).
func (r *Run) RerunStage() string {
	for _, s := range r.Stages {
		if s.Status == StageFailed || s.Status == StageCancelled {
			return s.Name
		}
	}
	return StageBuild
}
