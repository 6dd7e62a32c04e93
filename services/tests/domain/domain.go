// Package domain holds the test service's plain types and rules: what a
// test run is, how its outcome is decided and described. No SQL, no
// transport.
package domain

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/gitauth"
)

// Status is a test run's state.
type Status int

// Test run states. Running is the only state that is not an end state.
const (
	StatusRunning Status = iota + 1
	StatusPassed
	StatusFailed
	StatusError
	// StatusCancelled: the run was cancelled before the tests ended.
	StatusCancelled
)

func (s Status) String() string {
	switch s {
	case StatusRunning:
		return "RUNNING"
	case StatusPassed:
		return "PASSED"
	case StatusFailed:
		return "FAILED"
	case StatusError:
		return "ERROR"
	case StatusCancelled:
		return "CANCELLED"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Ended reports whether s is an end state.
func (s Status) Ended() bool {
	return s == StatusPassed || s == StatusFailed || s == StatusError || s == StatusCancelled
}

// CaseStatus is a test case's outcome.
type CaseStatus int

// Case outcomes.
const (
	CasePassed CaseStatus = iota + 1
	CaseFailed
	CaseSkipped
)

func (s CaseStatus) String() string {
	switch s {
	case CasePassed:
		return "passed"
	case CaseFailed:
		return "failed"
	case CaseSkipped:
		return "skipped"
	}
	return fmt.Sprintf("CaseStatus(%d)", int(s))
}

// Repository identifies the repository under test.
type Repository struct {
	ID, Name, URL string
	// GitCredential is the kind of credential the repository is read with.
	GitCredential gitauth.Kind
	// DefaultBranch is the branch the repository watches, which caches
	// fall back to (from the build's event; not stored).
	DefaultBranch string
}

// Counts are case counts by outcome.
type Counts struct {
	Passed, Failed, Skipped int
}

// Add returns the sum of c and o.
func (c Counts) Add(o Counts) Counts {
	return Counts{Passed: c.Passed + o.Passed, Failed: c.Failed + o.Failed, Skipped: c.Skipped + o.Skipped}
}

// TestRun is the testing of one run's successful build.
type TestRun struct {
	ID         string
	RunID      string
	BuildID    string
	Repository Repository
	Commit     string
	Branch     string
	Status     Status
	// Attempt counts the workers that took the test run (1 for the first).
	Attempt int
	Counts  Counts
	// FailureReason says why a run FAILED or is in ERROR.
	FailureReason string
	FailedStep    string
	ExitCode      int
	CreatedAt     time.Time
	// StartedAt is when the current attempt started.
	StartedAt time.Time
	EndedAt   time.Time
	// Steps are the pipeline's test steps, in order; queries fill them.
	Steps []Step
	// Suites are the suites the reports held; queries fill them.
	Suites []Suite
}

// Suite is one suite's counts, as stored.
type Suite struct {
	Name     string
	Counts   Counts
	Duration time.Duration
}

// Case is one test case, as stored.
type Case struct {
	// Position is the case's place among the test run's cases (report
	// order), from 0.
	Position int
	Suite    string
	Name     string
	Status   CaseStatus
	Duration time.Duration
	// Output is the end of a failed case's output.
	Output string
}

// DisplayName is how a case is named to people: its name, or for the
// synthetic cases that stand for a whole package ("[build failed]"), the
// suite followed by that name.
func (c Case) DisplayName() string {
	if strings.HasPrefix(c.Name, "[") {
		return c.Suite + " " + c.Name
	}
	return c.Name
}

// StepStatus is a test step's state.
type StepStatus int

// Step states. A test run's steps are PENDING until it ends; then each
// says how it ended (CANCELLED: the worker stopped it), or SKIPPED when it
// did not run.
const (
	StepPending StepStatus = iota + 1
	StepSucceeded
	StepFailed
	StepTimedOut
	StepSkipped
	StepCancelled
)

func (s StepStatus) String() string {
	switch s {
	case StepPending:
		return "PENDING"
	case StepSucceeded:
		return "SUCCEEDED"
	case StepFailed:
		return "FAILED"
	case StepTimedOut:
		return "TIMED_OUT"
	case StepSkipped:
		return "SKIPPED"
	case StepCancelled:
		return "CANCELLED"
	}
	return fmt.Sprintf("StepStatus(%d)", int(s))
}

// Step is one of the pipeline's test steps in a test run, as stored.
type Step struct {
	Name     string
	Status   StepStatus
	ExitCode int
	Duration time.Duration
	// Tries is how many times the step ran (its retries); 0: it did not.
	Tries int
	// Reason is why a skipped step did not run, or why a step failed
	// without running.
	Reason string
}

// PendingSteps are the named steps before they run.
func PendingSteps(names []string) []Step {
	steps := make([]Step, len(names))
	for i, name := range names {
		steps[i] = Step{Name: name, Status: StepPending}
	}
	return steps
}

// EndedSteps are the named steps once the test run ended: ended holds
// how each ended, by position (one without a name, or past its end, did
// not run: SKIPPED).
func EndedSteps(names []string, ended []StepResult) []Step {
	steps := make([]Step, len(names))
	for i, name := range names {
		steps[i] = Step{Name: name, Status: StepSkipped}
		if i < len(ended) && ended[i].Name != "" {
			r := ended[i]
			steps[i] = Step{Name: name, Status: r.Status(), ExitCode: r.ExitCode, Duration: r.Duration, Tries: r.Tries, Reason: r.Why}
		}
	}
	return steps
}

// StepResult is how one step ended.
type StepResult struct {
	Name     string
	ExitCode int
	TimedOut bool
	// Cancelled is true when the worker stopped the step.
	Cancelled bool
	Timeout   time.Duration
	Duration  time.Duration
	// LastLines are the step's last output lines.
	LastLines []string
	// Tries is how many times the step ran; Skipped says it did not (Why
	// says why); AllowFailure that its failure does not fail the test run.
	Tries        int
	Skipped      bool
	Why          string
	AllowFailure bool
}

// Failed reports whether the step failed.
func (s StepResult) Failed() bool { return !s.Skipped && (s.ExitCode != 0 || s.TimedOut) }

// Fails reports whether the step's failure fails the test run.
func (s StepResult) Fails() bool { return s.Failed() && !s.AllowFailure }

// Status is the step's end state.
func (s StepResult) Status() StepStatus {
	switch {
	case s.Skipped:
		return StepSkipped
	case s.Cancelled:
		return StepCancelled
	case s.TimedOut:
		return StepTimedOut
	case s.ExitCode != 0:
		return StepFailed
	}
	return StepSucceeded
}

// Reason describes a failed step: `step "unit" exited with code 1`.
func (s StepResult) Reason() string {
	if s.Why != "" {
		return fmt.Sprintf("step %q did not run: %s", s.Name, s.Why)
	}
	if s.TimedOut {
		return fmt.Sprintf("step %q timed out after %s", s.Name, s.Timeout)
	}
	return fmt.Sprintf("step %q exited with code %d", s.Name, s.ExitCode)
}

// MaxFailedCases is how many failed case names a TestRunFinished carries.
const MaxFailedCases = 20

// maxReasonCases is how many failed case names the failure reason lists.
const maxReasonCases = 5

// Outcome is what a finished attempt found.
type Outcome struct {
	Status Status
	Reason string
	// Steps are how the steps ended, by position (one without a name did
	// not run).
	Steps []StepResult
	// FailedStep is the step that failed, if one did.
	FailedStep *StepResult
	Suites     []Suite
	Cases      []Case
	// StepDuration is the time spent in steps.
	StepDuration time.Duration
}

// Counts sums the cases.
func (o Outcome) Counts() Counts {
	var c Counts
	for _, s := range o.Suites {
		c = c.Add(s.Counts)
	}
	return c
}

// MaxCaseEvents is how many cases of one test run are published as test
// case events (CDEvents testcaserun): a run may have thousands of cases.
const MaxCaseEvents = 100

// PublishedCases are the positions in Cases of the cases published as test
// case events, at most MaxCaseEvents: the failed ones first, then the
// skipped, then the passed, each in report order. omitted counts the rest.
func (o Outcome) PublishedCases() (positions []int, omitted int) {
	for _, status := range []CaseStatus{CaseFailed, CaseSkipped, CasePassed} {
		for i, c := range o.Cases {
			if c.Status != status {
				continue
			}
			if len(positions) == MaxCaseEvents {
				omitted++
				continue
			}
			positions = append(positions, i)
		}
	}
	return positions, omitted
}

// FailedCaseNames are the display names of the first MaxFailedCases
// failed cases.
func (o Outcome) FailedCaseNames() []string {
	var names []string
	for _, c := range o.Cases {
		if c.Status == CaseFailed {
			if len(names) == MaxFailedCases {
				break
			}
			names = append(names, c.DisplayName())
		}
	}
	return names
}

// Decide is the rule for a test run's end state, given the steps that ran
// (stopping at the first failure), the problems found reading the
// reports, and the cases the reports held:
//
//   - a failed case or a failed step makes the run FAILED; the reason names
//     the failed cases ("2 tests failed: TestA, TestB"), else the step;
//   - otherwise a report problem (missing, malformed) makes it ERROR, with
//     the problems as the reason;
//   - otherwise it PASSED.
//
// Report problems after a failed step are a consequence of that failure (the
// step did not get to write its report), so they are added to the reason of
// a FAILED run rather than making it ERROR.
func Decide(steps []StepResult, reportProblems []string, suites []Suite, cases []Case) Outcome {
	return DecideFailing(steps, -1, reportProblems, suites, cases)
}

// DecideFailing is Decide where the failing step is steps[first] (the
// first to fail, when steps ran at once), -1 for the first that fails the
// run in pipeline order.
func DecideFailing(steps []StepResult, first int, reportProblems []string, suites []Suite, cases []Case) Outcome {
	o := Outcome{Steps: steps, Suites: suites, Cases: cases}
	if first >= 0 && first < len(steps) && steps[first].Fails() {
		o.FailedStep = &steps[first]
	}
	for i := range steps {
		o.StepDuration += steps[i].Duration
		if steps[i].Fails() && o.FailedStep == nil {
			o.FailedStep = &steps[i]
		}
	}
	var failedNames []string
	failed := 0
	for _, c := range cases {
		if c.Status == CaseFailed {
			failed++
			if len(failedNames) < maxReasonCases {
				failedNames = append(failedNames, c.DisplayName())
			}
		}
	}
	var parts []string
	switch {
	case failed > 0:
		o.Status = StatusFailed
		parts = append(parts, failedCasesReason(failed, failedNames))
		if o.FailedStep != nil {
			parts = append(parts, o.FailedStep.Reason())
		}
	case o.FailedStep != nil:
		o.Status = StatusFailed
		parts = append(parts, o.FailedStep.Reason())
	case len(reportProblems) > 0:
		o.Status = StatusError
	default:
		o.Status = StatusPassed
	}
	parts = append(parts, reportProblems...)
	if o.Status != StatusPassed {
		o.Reason = strings.Join(parts, "; ")
	}
	return o
}

func failedCasesReason(n int, names []string) string {
	noun := "tests"
	if n == 1 {
		noun = "test"
	}
	s := fmt.Sprintf("%d %s failed: %s", n, noun, strings.Join(names, ", "))
	if more := n - len(names); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// Cancelled is the outcome of a test run whose run was cancelled: the
// steps that ran before, and the one stopped, are kept.
func Cancelled(reason string, steps []StepResult) Outcome {
	o := Errored(reason, steps)
	o.Status = StatusCancelled
	return o
}

// Errored is the outcome of an attempt that could not test the build: a
// missing run, a commit that cannot be checked out, an artifact that
// does not match its checksum, infrastructure that kept failing.
func Errored(reason string, steps []StepResult) Outcome {
	o := Outcome{Status: StatusError, Reason: reason, Steps: steps}
	for _, s := range steps {
		o.StepDuration += s.Duration
	}
	return o
}
