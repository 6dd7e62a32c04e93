// Package domain holds the build service's plain types and rules: what a
// build and its steps are, which states they move through, who may work on a
// build (the lease), and how failures are worded. It knows nothing of SQL,
// NATS or Connect.
package domain

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/executor"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/stepcache"
	"github.com/sluicehq/sluice/platform/stepgraph"
)

// Status is a build's state.
type Status string

// Build states. A build is created QUEUED, becomes RUNNING when a worker
// claims it and ends SUCCEEDED or FAILED (CANCELLED is reserved for run
// cancellation).
const (
	Queued    Status = "QUEUED"
	Running   Status = "RUNNING"
	Succeeded Status = "SUCCEEDED"
	Failed    Status = "FAILED"
	Cancelled Status = "CANCELLED"
)

// Ended reports whether s is a final state.
func (s Status) Ended() bool { return s == Succeeded || s == Failed || s == Cancelled }

// StepStatus is a step's state.
type StepStatus string

// Step states.
const (
	StepPending   StepStatus = "PENDING"
	StepRunning   StepStatus = "RUNNING"
	StepSucceeded StepStatus = "SUCCEEDED"
	StepFailed    StepStatus = "FAILED"
	StepTimedOut  StepStatus = "TIMED_OUT"
	StepCancelled StepStatus = "CANCELLED"
	StepSkipped   StepStatus = "SKIPPED"
)

// Repository identifies the repository a build checks out.
type Repository struct {
	ID, Name, URL string
	// GitCredential is the kind of credential the repository is read with
	// (from the run's event; not stored).
	GitCredential gitauth.Kind
	// DefaultBranch is the branch the repository watches, which caches
	// fall back to (from the run's event; not stored).
	DefaultBranch string
}

// StepSpec is one build step as the pipeline declares it.
type StepSpec struct {
	Name string
	// Run is the shell command.
	Run string
	// Timeout is 0 for the service's default.
	Timeout time.Duration
	Env     map[string]string
	// Secrets maps variables to the secrets whose values they receive.
	Secrets map[string]string
	// Image is the container image the step runs in; empty: a process.
	Image string
}

// ArtifactSpec is a file the build keeps once every step succeeded.
type ArtifactSpec struct {
	Name string
	// Path is relative to the workspace.
	Path string
}

// Run is what a build is asked to do: one run of a repository's pipeline.
type Run struct {
	ID         string
	Repository Repository
	Commit     string
	Branch     string
	Steps      []StepSpec
	Artifacts  []ArtifactSpec
	// Caches are the stage's dependency caches.
	Caches []stepcache.Spec
	// Services run beside the steps (executor.Backend.Open).
	Services []executor.Service
	// Graph orders Steps (one node per step, in the same order);
	// MaxParallel is the pipeline's bound on steps at once (0: none);
	// Facts are what the steps' conditions know of the run.
	Graph       []stepgraph.Node
	MaxParallel int32
	Facts       stepgraph.Facts
}

// Build is one run's build.
type Build struct {
	ID         string
	RunID      string
	Repository Repository
	Commit     string
	Branch     string
	Status     Status
	// Attempt counts the workers that claimed the build (1 for the first).
	Attempt int
	// WorkerID holds the build while LeaseExpires is in the future.
	WorkerID     string
	LeaseExpires time.Time
	Failure      Failure
	// StepDuration is the time spent inside steps in the last attempt.
	StepDuration time.Duration
	CreateTime   time.Time
	// StartTime is when the last attempt started.
	StartTime time.Time
	EndTime   time.Time
	Steps     []Step
	Artifacts []Artifact
}

// Claimable reports whether a worker may take the build at now: it was
// never started, or the worker running it stopped renewing its lease (it
// died, or it released the lease when it was stopped).
func (b Build) Claimable(now time.Time) bool {
	switch b.Status {
	case Queued:
		return true
	case Running:
		return !b.LeaseExpires.After(now)
	}
	return false
}

// Duration is the last attempt's wall time, once the build ended.
func (b Build) Duration() time.Duration {
	if b.EndTime.IsZero() || b.StartTime.IsZero() {
		return 0
	}
	return b.EndTime.Sub(b.StartTime)
}

// Step is a step's recorded state.
type Step struct {
	Name      string
	Status    StepStatus
	ExitCode  int
	StartTime time.Time
	EndTime   time.Time
	// Tries is how many times the step ran (its retries); 0: it did not.
	Tries int
	// Reason is why a skipped step did not run, or why a step failed
	// without running.
	Reason string
}

// Artifact is a stored build output.
type Artifact struct {
	Name string
	// Object is the object's name in the artifact store.
	Object string
	SHA256 string
	Size   int64
	// Format says whether the content is the file, or a directory's or a
	// glob's files as a gzipped tar.
	Format artifacts.Format
}

// Failure says why a build failed. The zero value means it did not.
type Failure struct {
	Reason string
	// Step, ExitCode and LastLogLines are set when a step failed.
	Step         string
	ExitCode     int
	LastLogLines []string
}

// Failed reports whether f describes a failure.
func (f Failure) Failed() bool { return f.Reason != "" }

// StepExited is the failure of a step that exited with a non-zero code.
func StepExited(step string, code int, last []string) Failure {
	return Failure{Reason: fmt.Sprintf("step %q exited with code %d", step, code), Step: step, ExitCode: code, LastLogLines: last}
}

// StepTimeout is the failure of a step killed at its timeout.
func StepTimeout(step string, timeout time.Duration, last []string) Failure {
	return Failure{Reason: fmt.Sprintf("step %q timed out after %s", step, timeout), Step: step, ExitCode: -1, LastLogLines: last}
}

// StepNotStarted is the failure of a step the executor could not start.
func StepNotStarted(step string, err error) Failure {
	return Failure{Reason: fmt.Sprintf("step %q could not be started: %v", step, err), Step: step, ExitCode: -1}
}

// StepConditionFailed is the failure of a step whose when: condition
// could not be evaluated.
func StepConditionFailed(step, reason string) Failure {
	return Failure{Reason: fmt.Sprintf("step %q did not run: %s", step, reason), Step: step, ExitCode: -1}
}

// StageNotStarted is the failure of a build whose stage could not be
// readied: its steps need a container engine this worker does not have,
// an image is missing, or a service did not start.
func StageNotStarted(err error) Failure {
	return Failure{Reason: fmt.Sprintf("the build could not start: %v", err)}
}

// SecretsUnresolved is the failure of a build whose steps ask for secrets
// source cannot give (not set, or no source to ask).
func SecretsUnresolved(err error) Failure {
	return Failure{Reason: fmt.Sprintf("secrets: %v", err)}
}

// CheckoutFailed is the failure of a build whose commit could not be
// checked out.
func CheckoutFailed(err error) Failure {
	return Failure{Reason: fmt.Sprintf("checkout failed: %v", err)}
}

// ArtifactMissing is the failure of a build whose declared artifact was not
// produced.
func ArtifactMissing(a ArtifactSpec) Failure {
	return Failure{Reason: fmt.Sprintf("artifact %q: %s not found", a.Name, a.Path)}
}

// ArtifactEmpty is the failure of a build whose artifact's glob matched
// no regular file, or whose artifact's directory holds none.
func ArtifactEmpty(a ArtifactSpec, glob bool) Failure {
	if glob {
		return Failure{Reason: fmt.Sprintf("artifact %q: no regular file matches %s", a.Name, a.Path)}
	}
	return Failure{Reason: fmt.Sprintf("artifact %q: the directory %s holds no regular file", a.Name, a.Path)}
}

// ArtifactNotFile is the failure of a build whose artifact path is not a
// regular file.
func ArtifactNotFile(a ArtifactSpec, what string) Failure {
	return Failure{Reason: fmt.Sprintf("artifact %q: %s is %s, not a regular file", a.Name, a.Path, what)}
}

// ArtifactTooLarge is the failure of a build whose artifact is over the
// limit; size says how large it is ("more than N" when it grew while it
// was read).
func ArtifactTooLarge(a ArtifactSpec, size string, limit int) Failure {
	return Failure{Reason: fmt.Sprintf("artifact %q: %s is %s bytes; at most %d are stored (hint: the build service's max-artifact-size setting sets the limit)", a.Name, a.Path, size, limit)}
}

// GaveUp is the failure of a build that could not be completed within the
// event's deliveries.
func GaveUp(deliveries uint64, err error) Failure {
	return Failure{Reason: fmt.Sprintf("gave up after %d attempts: %v", deliveries, err)}
}

// CommandSummary is the first line of a command, for log banners.
func CommandSummary(cmd string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(cmd), "\n")
	return strings.TrimSpace(first)
}

// Round rounds a duration for log lines (1.2s, 250ms).
func Round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d
}

// LastLogLines is how many of a failed step's last lines a failure carries.
const LastLogLines = 20
