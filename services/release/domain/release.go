package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/pathglob"
)

// Repository identifies a repository as source names it in events.
type Repository struct {
	ID   string
	Name string
	URL  string
	// GitCredential is the kind of credential the repository is read with,
	// as the release's event said.
	GitCredential gitauth.Kind
}

// ReleaseStatus is where a release stands.
type ReleaseStatus string

// Release statuses.
const (
	// ReleasePublished: versioned, artifacts recorded, not verified anywhere yet.
	ReleasePublished ReleaseStatus = "PUBLISHED"
	// ReleaseDeployed: verified in at least one environment.
	ReleaseDeployed ReleaseStatus = "DEPLOYED"
	// ReleaseBad: a deploy or verification of it failed; it is never a
	// rollback target.
	ReleaseBad ReleaseStatus = "BAD"
)

// Artifact is a build artifact that belongs to a release.
type Artifact struct {
	Name string
	// Object is the build's object in sluice-artifacts.
	Object string
	SHA256 string
	Size   int64
	// KeptObject is release's copy in its own store (KeptBucket of the
	// service), made with the release; empty for a release made before
	// release kept copies (the build's object is fetched), for an artifact
	// whose copy failed for good (so does the deploy's fetch), and once
	// the copy was pruned.
	KeptObject string
	// Format is whether the content is the file, or a directory's or a
	// glob's files as a gzipped tar (unpacked into a directory).
	Format artifacts.Format
}

// Release is one version of a repository.
type Release struct {
	ID         string
	Repository Repository
	Version    Version
	Commit     string
	RunID      string
	Changelog  string
	Artifacts  []Artifact
	// Environments are the pipeline's environments at Commit; a rollback to
	// this release deploys it the way it was meant to be deployed.
	Environments []Environment
	Status       ReleaseStatus
	CreatedAt    time.Time
	// PrunedAt is when the release's kept artifacts were deleted (it is
	// none of the releases kept for deploys and rollbacks any more); zero
	// while they are kept. A pruned release cannot be deployed again.
	PrunedAt time.Time
}

// Environment returns the release's own spec of the environment name.
func (r Release) Environment(name string) (Environment, bool) {
	i := slices.IndexFunc(r.Environments, func(e Environment) bool { return e.Name == name })
	if i < 0 {
		return Environment{}, false
	}
	return r.Environments[i], true
}

// DeploymentStatus is where a deployment stands.
type DeploymentStatus string

// Deployment statuses.
const (
	DeploymentDeploying DeploymentStatus = "DEPLOYING"
	DeploymentVerifying DeploymentStatus = "VERIFYING"
	DeploymentVerified  DeploymentStatus = "VERIFIED"
	DeploymentFailed    DeploymentStatus = "FAILED"
	// DeploymentRolledBack: it was verified and running, then a manual
	// rollback replaced it.
	DeploymentRolledBack DeploymentStatus = "ROLLED_BACK"
)

// InProgress reports whether the deployment has not ended.
func (s DeploymentStatus) InProgress() bool {
	return s == DeploymentDeploying || s == DeploymentVerifying
}

// InterruptedReason is the reason of a deployment found in progress when
// its run is handled again: the process stopped while its deploy command
// ran, and unless its environment redeploys on interrupt
// (Environment.RedeployOnInterrupt) a deploy command is never run again.
const InterruptedReason = "interrupted: the release service stopped during the deploy"

// MaxDeployAttempts is how many times a deploy command is started at most
// for one deployment, when its environment redeploys on interrupt: a
// deploy that brings its release replica down every time must end.
const MaxDeployAttempts = 3

// Deployment is one deploy of a release to an environment.
type Deployment struct {
	ID          string
	ReleaseID   string
	Repository  string
	Environment string
	Version     string
	// RunID is the run whose release stage made this deployment; empty for
	// a manual rollback.
	RunID  string
	Status DeploymentStatus
	Reason string
	// Rollback is true when this deployment put an earlier release back.
	Rollback bool
	// Started is true once the deploy command was started: until then the
	// environment was not touched.
	Started bool
	// Attempts is how many times the deploy command was started (more
	// than once only when interrupted, see MaxDeployAttempts).
	Attempts int
	// Superseded is set on a deployment found interrupted after a later
	// one replaced it (another release, or a rollback, deployed there
	// since): it failed, but its release is not bad for it, and nothing
	// rolls it back.
	Superseded bool
	// FailedStep and LastLogLines are set when the deployment failed in a
	// command: the step of the release log it failed in (LogStep) and the
	// last lines of that command's output.
	FailedStep   string
	LastLogLines []string
	CreatedAt    time.Time
	EndedAt      time.Time
}

// Environment is a deploy target as the pipeline describes it.
type Environment struct {
	Name          string
	Deploy        string
	DeployTimeout time.Duration
	Verify        Verify
	Env           map[string]string
	// Secrets maps variables to the secrets whose values they receive.
	Secrets map[string]string
	// RedeployOnInterrupt is the pipeline's on_interrupt: redeploy: a
	// deploy found interrupted after its command started is run again
	// (up to MaxDeployAttempts starts) instead of failed and rolled back.
	RedeployOnInterrupt bool
}

// Verify is the health check after a deploy: an HTTP URL that must answer
// 2xx or a command that must exit 0, tried until Timeout. Both empty means
// the deploy succeeding is enough.
type Verify struct {
	HTTP    string
	Command string
	Timeout time.Duration
}

// ReleaseSpec is the pipeline's release section.
type ReleaseSpec struct {
	// Present is false when the pipeline has no release section.
	Present      bool
	Branches     []string
	Environments []Environment
	// Tags are the globs of the tags whose runs are released.
	Tags []string
}

// TagPrefix starts the ref of a tag.
const TagPrefix = "refs/tags/"

// Target is what a run of branch and ref is released as, in the
// pipeline's and the platform's rules: its branch, or the full ref of a
// tag (refs/tags/v1.2.0, which environment-branches patterns such as
// refs/tags/v* match); "" for a run of neither (a sha), and for a branch
// named like a ref (refs/tags/v1.2.0), which must not pass for that ref.
func Target(branch, ref string) string {
	switch {
	case strings.HasPrefix(branch, "refs/"):
		return ""
	case branch != "":
		return branch
	case strings.HasPrefix(ref, TagPrefix):
		return ref
	}
	return ""
}

// SkipReason says why a run released as target (Target) is not released,
// or "" when it is.
func (s ReleaseSpec) SkipReason(target string) string {
	tag, isTag := strings.CutPrefix(target, TagPrefix)
	switch {
	case !s.Present:
		return "the pipeline has no release section"
	case len(s.Environments) == 0:
		return "the pipeline's release section has no environments"
	case isTag && len(s.Tags) == 0:
		return fmt.Sprintf("tag %q: the pipeline's release section lists no tags", tag)
	case isTag && !pathglob.MatchAny(s.Tags, tag):
		return fmt.Sprintf("tag %q is not a release tag (%s)", tag, strings.Join(s.Tags, ", "))
	case isTag:
		return ""
	case len(s.Branches) == 0:
		return "the pipeline's release section lists no branches"
	case target == "":
		return fmt.Sprintf("the run is not on a branch or a tag; release branches: %s", strings.Join(s.Branches, ", "))
	case !slices.Contains(s.Branches, target):
		return fmt.Sprintf("branch %q is not a release branch (%s)", target, strings.Join(s.Branches, ", "))
	}
	return ""
}

// MaxTagVersionPart bounds each part of a version a tag names: a tag
// such as v9223372036854775807.0.0 would leave no version after it.
const MaxTagVersionPart = 999_999

// TagVersion is the version a tag names: v1.2.3 or 1.2.3, each part at
// most MaxTagVersionPart; false for a tag that names none (nightly, v1.2,
// v1.2.3-rc.1, v1000000.0.0).
func TagVersion(tag string) (Version, bool) {
	if !strings.HasPrefix(tag, "v") {
		tag = "v" + tag
	}
	v, err := ParseVersion(tag)
	if err != nil || max(v.Major, v.Minor, v.Patch) > MaxTagVersionPart {
		return Version{}, false
	}
	return v, true
}

// FailureSummary turns a deployment's reason ("verification failed: GET
// ...") into what a release stage reports ("verification failed on
// staging: GET ...").
func FailureSummary(environment, reason string) string {
	what, detail, ok := strings.Cut(reason, ": ")
	if !ok {
		return reason + " on " + environment
	}
	return what + " on " + environment + ": " + detail
}
