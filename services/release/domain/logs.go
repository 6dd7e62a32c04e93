package domain

import "strings"

// The kinds of step in a release log. A step is a kind and an environment,
// "deploy:staging" (LogStep), so that the steps of several environments
// stay apart in one run's log while a reader can still ask for every
// environment's deploy at once (StepMatches).
const (
	// StepDeploy: checking the release out, fetching its artifacts and
	// running the deploy command.
	StepDeploy = "deploy"
	// StepVerify: the verification after a deploy.
	StepVerify = "verify"
	// StepRollback: everything a rollback does (its deploy and its
	// verification), automatic or requested.
	StepRollback = "rollback"
)

// StepKinds are the kinds of step, in the order they happen.
var StepKinds = []string{StepDeploy, StepVerify, StepRollback}

// LogStep is the step of kind in environment: "deploy:staging".
func LogStep(kind, environment string) string { return kind + ":" + environment }

// StepMatches reports whether a log line of step is selected by filter: an
// empty filter selects every line, a kind ("deploy") that kind in every
// environment, anything else that step only.
func StepMatches(filter, step string) bool {
	if filter == "" || filter == step {
		return true
	}
	kind, _, ok := strings.Cut(step, ":")
	return ok && kind == filter
}

// LastLogLines is how many of a failed command's last output lines a
// deployment keeps and a release stage's failure reason carries (as
// build's and test's failures do).
const LastLogLines = 20

// WithLastLines is reason followed by the last lines of step's output, one
// a line, "| " before each (the way `sluice show` prints a failed build
// step's), so that a failure says what the command printed. Without lines
// it is reason.
func WithLastLines(reason, step string, lines []string) string {
	if len(lines) == 0 {
		return reason
	}
	var b strings.Builder
	b.WriteString(reason)
	b.WriteString("\nlast lines of " + step + ":")
	for _, l := range lines {
		b.WriteString("\n| ")
		b.WriteString(l)
	}
	return b.String()
}
