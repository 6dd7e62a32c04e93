package domain

import (
	"strings"

	"github.com/sluicehq/sluice/platform/forge"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// StatusContext is the commit status context of a whole run; a stage's is
// StatusContext + "/" + its name.
const StatusContext = "sluice"

// CommitStatuses are what run's commit statuses on its forge say now:
// one for the run, or one per stage when its pipeline asks for that
// (statuses: stages). A run whose pipeline file is invalid has no stages:
// it reports on the run's context.
func CommitStatuses(run Run) []forge.Status {
	if run.Pipeline.GetStatuses() != sourcev1.CommitStatuses_COMMIT_STATUSES_STAGES || len(run.Stages) == 0 {
		return []forge.Status{runStatus(run)}
	}
	out := make([]forge.Status, 0, len(run.Stages))
	broken := false // a stage before failed or was cancelled
	for _, s := range run.Stages {
		out = append(out, stageStatus(run, s, broken))
		broken = broken || s.Status == StageFailed || s.Status == StageCancelled
	}
	return out
}

func runStatus(run Run) forge.Status {
	st := forge.Status{Context: StatusContext}
	switch run.Status {
	case RunQueued:
		st.State, st.Description = forge.StatePending, "queued"
	case RunRunning:
		// The stage at work, else the last one that passed.
		st.State, st.Description = forge.StateRunning, "running"
		for _, s := range run.Stages {
			if s.Status == StageRunning {
				st.Description = s.Name + ": running"
				break
			}
			if s.Status == StageSucceeded {
				st.Description = s.Name + ": passed"
			}
		}
	case RunSucceeded:
		st.State, st.Description = forge.StateSuccess, "passed"
		if t := run.Stage(StageTest); t != nil && t.Status == StageSucceeded && t.Detail != "" && t.Detail != TestCounts(0, 0, 0) {
			st.Description = "passed: " + t.Detail
		}
		if run.ReleaseVersion != "" {
			st.Description += "; released " + run.ReleaseVersion
		}
	case RunFailed:
		st.State, st.Description = forge.StateFailure, firstLine(run.FailureReason)
		for _, s := range run.Stages {
			if s.Status == StageFailed {
				st.Description = s.Name + ": " + stageFailure(s)
				break
			}
		}
	case RunCancelled:
		// Who cancelled it is not said: the forge may show it to anyone.
		st.State, st.Description = forge.StateCancelled, "cancelled"
	}
	return st
}

func stageStatus(run Run, s Stage, broken bool) forge.Status {
	st := forge.Status{Context: StatusContext + "/" + s.Name}
	switch s.Status {
	case StagePending:
		st.State, st.Description = forge.StatePending, "waiting"
		if run.Status.Final() {
			// The run ended before the stage began.
			st.State, st.Description = forge.StateCancelled, "not run"
		}
	case StageRunning:
		st.State, st.Description = forge.StateRunning, "running"
	case StageSucceeded:
		st.State, st.Description = forge.StateSuccess, "passed"
		if s.Detail != "" {
			st.Description = firstLine(s.Detail)
		}
	case StageFailed:
		st.State, st.Description = forge.StateFailure, stageFailure(s)
	case StageSkipped:
		// Skipped with nothing to do (no such section, not a release
		// branch) is a pass; skipped because a stage before it failed or
		// was cancelled, or the run ended before it began, is not.
		st.State, st.Description = forge.StateSuccess, "skipped"
		if broken || strings.Contains(s.Reason, "before it started") {
			st.State = forge.StateCancelled
		}
		if s.Reason != "" {
			st.Description = "skipped: " + firstLine(s.Reason)
		}
	case StageCancelled:
		st.State, st.Description = forge.StateCancelled, "cancelled"
	}
	return st
}

// stageFailure is a failed stage's short story: its counts (tests) or its
// reason.
func stageFailure(s Stage) string {
	if s.Name == StageTest && s.Detail != "" {
		return firstLine(s.Detail)
	}
	if s.Reason != "" {
		return firstLine(s.Reason)
	}
	return "failed"
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
