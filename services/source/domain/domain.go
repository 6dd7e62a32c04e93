// Package domain holds the source service's plain types and the rules that
// fold other services' events into a run's summary. It knows nothing of SQL,
// NATS or Connect.
package domain

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/gitauth"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// PipelineFile is the pipeline file's path in a repository.
const PipelineFile = ".sluice.yaml"

// PipelineDir is the folder of a repository's further pipeline files,
// PipelineDir/<name>PipelineSuffix each.
const (
	PipelineDir    = ".sluice"
	PipelineSuffix = ".yaml"
)

// Repository is a registered git repository.
type Repository struct {
	ID   string
	Name string
	// URL is an absolute local path or a git URL.
	URL string
	// Branch is the watched branch.
	Branch string
	// WebhookSecret signs the repository's webhooks.
	WebhookSecret string
	// LastSeenCommit is the head of Branch the last time polling or a
	// webhook looked; "" when the branch had no commits.
	LastSeenCommit string
	CreatedAt      time.Time
	// GitCredential is the kind of credential the repository is read
	// with, by which of its reserved secrets it has (gitauth).
	GitCredential gitauth.Kind
	// Forge is where the repository lives, when Sluice knows: its webhooks
	// come from there and its runs are reported back there.
	Forge forge.Repo
	// HasForgeToken: the repository has the secret forge.TokenSecret.
	HasForgeToken bool
	// PullRequestSecrets lets the runs of pull requests from the
	// repository's own branches have secrets (never those from forks).
	PullRequestSecrets bool
	// ForkPullRequests lets pull requests from forks run (never with
	// secrets).
	ForkPullRequests bool
	// ForgeReleases makes each release on the forge too: its git tag and
	// the forge's release (ForgeReleaseRequested).
	ForgeReleases bool
}

// Trigger is what started a run.
type Trigger string

// Triggers.
const (
	TriggerManual  Trigger = "manual"
	TriggerPoll    Trigger = "poll"
	TriggerWebhook Trigger = "webhook"
	// TriggerPullRequest: a pull (merge) request was opened, reopened or
	// pushed to.
	TriggerPullRequest Trigger = "pull_request"
	// TriggerSchedule: a schedule of the pipeline's on.schedule came due.
	TriggerSchedule Trigger = "schedule"
)

// RunStatus is a run's overall state.
type RunStatus string

// Run statuses. Succeeded, failed and cancelled are final.
const (
	RunQueued    RunStatus = "queued"
	RunRunning   RunStatus = "running"
	RunSucceeded RunStatus = "succeeded"
	RunFailed    RunStatus = "failed"
	RunCancelled RunStatus = "cancelled"
)

// Final reports whether s is an end state, which never changes again.
func (s RunStatus) Final() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCancelled
}

// StageStatus is one stage's state.
type StageStatus string

// Stage statuses, in the only order a stage may move through them:
// pending, then running, then one of the terminal ones.
const (
	StagePending   StageStatus = "pending"
	StageRunning   StageStatus = "running"
	StageSucceeded StageStatus = "succeeded"
	StageFailed    StageStatus = "failed"
	StageSkipped   StageStatus = "skipped"
	// StageCancelled: the run was cancelled while the stage held it.
	StageCancelled StageStatus = "cancelled"
)

// rank orders stage statuses; a stage only moves to a higher rank.
func (s StageStatus) rank() int {
	switch s {
	case StagePending:
		return 0
	case StageRunning:
		return 1
	default:
		return 2
	}
}

// Terminal reports whether s is an end state of a stage.
func (s StageStatus) Terminal() bool { return s.rank() == 2 }

// Stage names, in pipeline order.
const (
	StageBuild   = "build"
	StageTest    = "test"
	StageRelease = "release"
)

// StageNames lists the stages of every run in order.
func StageNames() []string { return []string{StageBuild, StageTest, StageRelease} }

// Stage is one service's part of a run.
type Stage struct {
	Name         string
	Status       StageStatus
	StartedAt    time.Time
	EndedAt      time.Time
	Reason       string
	FailedStep   string
	ExitCode     int
	LastLogLines []string
	Detail       string
}

// Run is one pass of a commit through the pipeline, with the summary folded
// from the stages' events.
type Run struct {
	ID           string
	RepositoryID string
	// Repository is the repository's name.
	Repository    string
	RepositoryURL string
	// RepositoryBranch is the branch the repository watches (its
	// default): the stages' caches fall back to it.
	RepositoryBranch string
	// GitCredential is the repository's (Repository.GitCredential).
	GitCredential  gitauth.Kind
	Commit         string
	Ref            string
	Branch         string
	Trigger        Trigger
	Status         RunStatus
	CreatedAt      time.Time
	EndedAt        time.Time
	FailureReason  string
	ReleaseVersion string
	CommitMessage  string
	// Pipeline is nil when the pipeline file was missing or invalid.
	Pipeline *sourcev1.Pipeline
	// Pipelines are the commit's pipeline files the run was made from,
	// before a trigger's rules chose those the run holds (Pipeline is
	// theirs merged); not stored, nil for a run read back.
	Pipelines []NamedPipeline
	// Holds names the pipelines the run holds ("" for .sluice.yaml's);
	// nil for a run whose files were missing or invalid, or made before
	// there were several (which holds .sluice.yaml's: HoldsAllOf).
	Holds []string
	// Changes are what the run's commit changed, for when: conditions
	// (see Service.changesOf), as its RunRequested carried them; a rerun
	// gets its run's.
	Changes *sourcev1.Changes
	// PullRequest is the pull (merge) request a TriggerPullRequest run is
	// of (0: none), PullRequestFromFork whether its head is in a fork.
	PullRequest         int64
	PullRequestFromFork bool
	Stages              []Stage
	// CancelRequestedAt is when someone asked for the run to be cancelled
	// (CancelRun), and CancelRequestedBy who; zero and empty before.
	CancelRequestedAt time.Time
	CancelRequestedBy string
	// RerunOf is the run this one reruns (RerunRun), RerunFrom its first
	// stage (StageBuild, StageTest or StageRelease; the stages before
	// reuse what RerunOf made); both empty for another run.
	RerunOf   string
	RerunFrom string
	// AdmittedAt is when the run was let start (its RunRequested
	// published); zero while it waits for room (Admit).
	AdmittedAt time.Time
	// ConcurrencyGroup names the run's concurrency group within its
	// repository ("branch main", "repository"), "" for none, and
	// ConcurrencyLimit how many of the group's runs may be active at once.
	ConcurrencyGroup string
	ConcurrencyLimit int
	// Version counts the run's stored changes.
	Version int64
}

// NamedPipeline is the pipeline of one pipeline file: Name "" for
// PipelineFile, <name> for PipelineDir/<name>PipelineSuffix.
type NamedPipeline struct {
	Name, Path string
	Pipeline   *sourcev1.Pipeline
}

// NamesOf are the names of pipelines.
func NamesOf(pipelines []NamedPipeline) []string {
	names := make([]string, 0, len(pipelines))
	for _, p := range pipelines {
		names = append(names, p.Name)
	}
	return names
}

// HoldsAllOf says a run holding the pipelines holds holds every pipeline
// of a run holding of: it may supersede that run, whose work it does
// too. Nil holds .sluice.yaml's pipeline alone.
func HoldsAllOf(holds, of []string) bool {
	if holds == nil {
		holds = []string{""}
	}
	if of == nil {
		of = []string{""}
	}
	for _, name := range of {
		if !slices.Contains(holds, name) {
			return false
		}
	}
	return true
}

// NewRun makes a queued run with every stage pending.
func NewRun(id string, repo Repository, commit Commit, ref, branch string, trigger Trigger, pipeline *sourcev1.Pipeline, now time.Time) Run {
	r := Run{
		ID:               id,
		RepositoryID:     repo.ID,
		Repository:       repo.Name,
		RepositoryURL:    repo.URL,
		RepositoryBranch: repo.Branch,
		GitCredential:    repo.GitCredential,
		Commit:           commit.SHA,
		Ref:              ref,
		Branch:           branch,
		Trigger:          trigger,
		Status:           RunQueued,
		CreatedAt:        now,
		CommitMessage:    commit.Message,
		Pipeline:         pipeline,
	}
	for _, name := range StageNames() {
		r.Stages = append(r.Stages, Stage{Name: name, Status: StagePending})
	}
	r.ConcurrencyGroup, r.ConcurrencyLimit = concurrencyGroup(pipeline.GetConcurrency(), ref, branch)
	return r
}

// concurrencyGroup is the group a run of ref on branch belongs to under c,
// and the group's limit; "" and 0 when c is nil. A branch group of a run
// of a tag or a commit is its ref's.
func concurrencyGroup(c *sourcev1.Concurrency, ref, branch string) (string, int) {
	limit := max(int(c.GetLimit()), 1)
	switch c.GetGroup() {
	case sourcev1.ConcurrencyScope_CONCURRENCY_SCOPE_REPOSITORY:
		return "repository", limit
	case sourcev1.ConcurrencyScope_CONCURRENCY_SCOPE_BRANCH:
		if branch != "" {
			return "branch " + branch, limit
		}
		return "ref " + ref, limit
	}
	return "", 0
}

// AsPullRequest makes r a run of pull request number: it never releases
// (its pipeline's release section is removed), and whatever concurrency
// group its pipeline asks for, it is its pull request's own, so that a
// pull request's pipeline (a fork's, say) can neither hold up nor cancel
// another branch's runs.
func (r *Run) AsPullRequest(number int64, fromFork bool) {
	r.PullRequest, r.PullRequestFromFork = number, fromFork
	if r.Pipeline.GetRelease() != nil {
		r.Pipeline.Release = nil
	}
	if r.ConcurrencyGroup != "" {
		r.ConcurrencyGroup = "branch " + r.Branch
	}
}

// ForceCancel ends the run cancelled now, without waiting for its stages
// (CancelRun with force): a running stage becomes cancelled, a pending
// one skipped. by says who cancelled.
func (r *Run) ForceCancel(by string, at time.Time) bool {
	if r.Status.Final() {
		return false
	}
	for i := range r.Stages {
		s := &r.Stages[i]
		switch s.Status {
		case StageRunning:
			s.Status, s.EndedAt, s.Reason = StageCancelled, at, "cancelled by "+by+" (forced: the stage was not waited for)"
		case StagePending:
			s.Status, s.Reason = StageSkipped, "the run was cancelled"
		}
	}
	return r.End(RunCancelled, "cancelled by "+by+" (forced: the stages were not waited for)", at)
}

// Waiting reports whether the run waits to be let start.
func (r *Run) Waiting() bool { return r.Status == RunQueued && r.AdmittedAt.IsZero() }

// CancelWaiting ends a run that was never let start as cancelled: no
// stage holds it, so source ends it at once. by says who cancelled.
func (r *Run) CancelWaiting(by string, at time.Time) bool {
	if !r.Waiting() {
		return false
	}
	for i := range r.Stages {
		r.Stages[i].Status = StageSkipped
		r.Stages[i].Reason = "the run was cancelled before it started"
	}
	return r.End(RunCancelled, "cancelled by "+by+" before it started", at)
}

// NewFailedRun makes a run that failed before any stage could start, for
// example because its pipeline file is invalid. Every stage is skipped.
func NewFailedRun(id string, repo Repository, commit Commit, ref, branch string, trigger Trigger, reason string, now time.Time) Run {
	r := NewRun(id, repo, commit, ref, branch, trigger, nil, now)
	r.AdmittedAt = now // nothing to wait for
	r.Status = RunFailed
	r.EndedAt = now
	r.FailureReason = reason
	for i := range r.Stages {
		r.Stages[i].Status = StageSkipped
		r.Stages[i].Reason = "the run failed before it started"
	}
	return r
}

// Stage returns the stage called name, or nil.
func (r *Run) Stage(name string) *Stage {
	for i := range r.Stages {
		if r.Stages[i].Name == name {
			return &r.Stages[i]
		}
	}
	return nil
}

// Commit is one commit of a repository.
type Commit struct {
	SHA     string
	Message string
	// Author is "Name <email>".
	Author string
	Time   time.Time
}

// Subject is the first line of the commit message.
func (c Commit) Subject() string {
	subject, _, _ := strings.Cut(c.Message, "\n")
	return strings.TrimSpace(subject)
}

var (
	nameInvalid = regexp.MustCompile(`[^a-z0-9._-]+`)
	nameValid   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
)

// MaxNameLength bounds repository names.
const MaxNameLength = 100

// NameFromURL derives a repository name from its URL or path: the last
// element without ".git", lower-cased, with runs of characters a name cannot
// hold replaced by "-". It returns "" when nothing usable is left.
func NameFromURL(url string) string {
	s := strings.TrimRight(url, `/\`)
	if i := strings.LastIndexAny(s, `/\:`); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSuffix(strings.ToLower(s), ".git")
	s = nameInvalid.ReplaceAllString(s, "-")
	s = strings.TrimLeft(s, "._-")
	if len(s) > MaxNameLength {
		s = strings.TrimRight(s[:MaxNameLength], "._-")
	}
	return s
}

// ValidName reports whether s can name a repository.
func ValidName(s string) bool { return len(s) <= MaxNameLength && nameValid.MatchString(s) }

// MissingPipelineReason is a run's failure reason when the commit has no
// pipeline file.
func MissingPipelineReason(commit string) string {
	return fmt.Sprintf("%s: not found at commit %s, nor any %s/*%s", PipelineFile, commit, PipelineDir, PipelineSuffix)
}
