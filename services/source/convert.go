package source

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/forge"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/prototime"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// Conversions between the domain and the protos: the API's messages, the
// events source publishes, and the outcomes the other stages' events
// report.

// --- the API ---

func newRepositoryFromProto(req *sourcev1.CreateRepositoryRequest) NewRepository {
	return NewRepository{URL: req.GetUrl(), Name: req.GetName(), Branch: req.GetBranch(), WebhookSecret: req.GetWebhookSecret(),
		Credential: gitCredentialFromProto(req.GetGitCredential()),
		Forge:      forge.RepoFromProto(req.GetForge()), ForgeToken: req.GetForgeToken(), PullRequestSecrets: req.GetPullRequestSecrets(), ForkPullRequests: req.GetForkPullRequests(),
		ForgeReleases: req.GetForgeReleases()}
}

func gitCredentialFromProto(c *sourcev1.GitCredential) gitauth.Credential {
	if t := c.GetHttpsToken(); t != nil {
		return gitauth.Credential{Token: t.GetToken(), Username: t.GetUsername()}
	}
	if k := c.GetSshKey(); k != nil {
		return gitauth.Credential{SSHKey: k.GetPrivateKey(), KnownHosts: k.GetKnownHosts()}
	}
	return gitauth.Credential{}
}

func repositoryToProto(r domain.Repository) *sourcev1.Repository {
	return &sourcev1.Repository{
		Id:                 r.ID,
		Name:               r.Name,
		Url:                r.URL,
		Branch:             r.Branch,
		CreateTime:         prototime.Timestamp(r.CreatedAt),
		WebhookSecret:      r.WebhookSecret,
		LastSeenCommit:     r.LastSeenCommit,
		GitCredential:      r.GitCredential.Proto(),
		Forge:              r.Forge.Proto(),
		HasForgeToken:      r.HasForgeToken,
		PullRequestSecrets: r.PullRequestSecrets,
		ForkPullRequests:   r.ForkPullRequests,
		ForgeReleases:      r.ForgeReleases,
	}
}

func runToProto(r domain.Run) *sourcev1.Run {
	out := &sourcev1.Run{
		Id:             r.ID,
		RepositoryId:   r.RepositoryID,
		Repository:     r.Repository,
		Commit:         r.Commit,
		Ref:            r.Ref,
		Branch:         r.Branch,
		Trigger:        triggerToProto(r.Trigger),
		Status:         runStatusToProto(r.Status),
		CreateTime:     prototime.Timestamp(r.CreatedAt),
		EndTime:        prototime.Timestamp(r.EndedAt),
		FailureReason:  r.FailureReason,
		ReleaseVersion: r.ReleaseVersion,
		CommitMessage:  r.CommitMessage,
		Pipeline:       r.Pipeline,
		// nil when zero
		CancelRequestTime:   prototime.Timestamp(r.CancelRequestedAt),
		CancelRequestedBy:   r.CancelRequestedBy,
		RerunOf:             r.RerunOf,
		RerunFrom:           r.RerunFrom,
		AdmitTime:           prototime.Timestamp(r.AdmittedAt),
		ConcurrencyGroup:    r.ConcurrencyGroup,
		PullRequest:         r.PullRequest,
		PullRequestFromFork: r.PullRequestFromFork,
	}
	for _, s := range r.Stages {
		out.Stages = append(out.Stages, &sourcev1.Stage{
			Name:         s.Name,
			Status:       stageStatusToProto(s.Status),
			StartTime:    prototime.Timestamp(s.StartedAt),
			EndTime:      prototime.Timestamp(s.EndedAt),
			Reason:       s.Reason,
			FailedStep:   s.FailedStep,
			ExitCode:     int32(s.ExitCode),
			LastLogLines: slices.Clone(s.LastLogLines),
			Detail:       s.Detail,
		})
	}
	return out
}

func commitToProto(c domain.Commit) *sourcev1.Commit {
	return &sourcev1.Commit{Sha: c.SHA, Message: c.Message, Author: c.Author, Time: prototime.Timestamp(c.Time)}
}

func triggerToProto(t domain.Trigger) sourcev1.Trigger {
	switch t {
	case domain.TriggerManual:
		return sourcev1.Trigger_TRIGGER_MANUAL
	case domain.TriggerPoll:
		return sourcev1.Trigger_TRIGGER_POLL
	case domain.TriggerWebhook:
		return sourcev1.Trigger_TRIGGER_WEBHOOK
	case domain.TriggerPullRequest:
		return sourcev1.Trigger_TRIGGER_PULL_REQUEST
	case domain.TriggerSchedule:
		return sourcev1.Trigger_TRIGGER_SCHEDULE
	}
	return sourcev1.Trigger_TRIGGER_UNSPECIFIED
}

func runStatusToProto(s domain.RunStatus) sourcev1.RunStatus {
	switch s {
	case domain.RunQueued:
		return sourcev1.RunStatus_RUN_STATUS_QUEUED
	case domain.RunRunning:
		return sourcev1.RunStatus_RUN_STATUS_RUNNING
	case domain.RunSucceeded:
		return sourcev1.RunStatus_RUN_STATUS_SUCCEEDED
	case domain.RunFailed:
		return sourcev1.RunStatus_RUN_STATUS_FAILED
	case domain.RunCancelled:
		return sourcev1.RunStatus_RUN_STATUS_CANCELLED
	}
	return sourcev1.RunStatus_RUN_STATUS_UNSPECIFIED
}

func stageStatusToProto(s domain.StageStatus) sourcev1.StageStatus {
	switch s {
	case domain.StagePending:
		return sourcev1.StageStatus_STAGE_STATUS_PENDING
	case domain.StageRunning:
		return sourcev1.StageStatus_STAGE_STATUS_RUNNING
	case domain.StageSucceeded:
		return sourcev1.StageStatus_STAGE_STATUS_SUCCEEDED
	case domain.StageFailed:
		return sourcev1.StageStatus_STAGE_STATUS_FAILED
	case domain.StageSkipped:
		return sourcev1.StageStatus_STAGE_STATUS_SKIPPED
	case domain.StageCancelled:
		return sourcev1.StageStatus_STAGE_STATUS_CANCELLED
	}
	return sourcev1.StageStatus_STAGE_STATUS_UNSPECIFIED
}

// defaultCommitsLimit is ListCommits' page when neither page_size nor
// limit is set (as it was before page_size).
const defaultCommitsLimit = 1000

// commitsPage is the page a ListCommits request asks for: page_size, else
// the older limit (which may ask for up to 10000 commits, and still can),
// else 1000.
func commitsPage(req *sourcev1.ListCommitsRequest) (paging.Page, error) {
	page, err := paging.Request(req.GetPageSize(), 0, req.GetPageToken())
	if err != nil {
		return page, err
	}
	if req.GetPageSize() == 0 {
		page.Size = defaultCommitsLimit
		if req.GetLimit() > 0 {
			page.Size = int(req.GetLimit())
		}
	}
	return page, nil
}

// --- the events source publishes ---

func repositoryRefToProto(r domain.Repository) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: r.ID, Name: r.Name, Url: r.URL, GitCredential: r.GitCredential.Proto()}
}

// runRepositoryRef is the reference to a run's repository.
func runRepositoryRef(run domain.Run) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: run.RepositoryID, Name: run.Repository, Url: run.RepositoryURL, GitCredential: run.GitCredential.Proto(), DefaultBranch: run.RepositoryBranch}
}

func repositoryCreatedToProto(r domain.Repository) *sourceeventsv1.RepositoryCreated {
	return &sourceeventsv1.RepositoryCreated{Repository: repositoryRefToProto(r), Branch: r.Branch}
}

func runRequestedToProto(run domain.Run) *sourceeventsv1.RunRequested {
	return &sourceeventsv1.RunRequested{
		RunId:         run.ID,
		Repository:    runRepositoryRef(run),
		Commit:        run.Commit,
		Ref:           run.Ref,
		Branch:        run.Branch,
		Trigger:       triggerToProto(run.Trigger),
		Pipeline:      run.Pipeline,
		CommitMessage: run.CommitMessage,
		Changes:       run.Changes,
		RerunOf:       run.RerunOf,
		RerunFrom:     run.RerunFrom,
	}
}

func runStartedToProto(run domain.Run, buildID string) *sourceeventsv1.RunStarted {
	return &sourceeventsv1.RunStarted{
		RunId:      run.ID,
		Repository: runRepositoryRef(run),
		Commit:     run.Commit,
		Branch:     run.Branch,
		BuildId:    buildID,
	}
}

func runFinishedToProto(run domain.Run) *sourceeventsv1.RunFinished {
	return &sourceeventsv1.RunFinished{
		RunId:          run.ID,
		Repository:     runRepositoryRef(run),
		Commit:         run.Commit,
		Status:         runStatusToProto(run.Status),
		FailureReason:  run.FailureReason,
		ReleaseVersion: run.ReleaseVersion,
	}
}

func changeReceivedToProto(repo domain.Repository, run domain.Run, trigger domain.Trigger, deliveryID string) *sourceeventsv1.ChangeReceived {
	return &sourceeventsv1.ChangeReceived{
		Repository: repositoryRefToProto(repo),
		Commit:     run.Commit,
		Ref:        run.Ref,
		Trigger:    triggerToProto(trigger),
		DeliveryId: deliveryID,
	}
}

// --- the outcomes of the other stages' events ---
//
// Each is the stage's outcome as the run summary records it (summary.go's
// applyOutcome): succeeded, failed or skipped with the reason and detail;
// running for a stage that reports it still runs; an empty status for one
// this service does not know.

// buildOutcome is what a BuildFinished says of the build stage.
func buildOutcome(p *buildeventsv1.BuildFinished, at time.Time) domain.StageOutcome {
	switch p.GetStatus() {
	case buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED:
		detail := artifactsDetail(p.GetArtifacts())
		if p.GetReusedBuild() != "" {
			detail = strings.TrimPrefix(detail+"; reused from run "+p.GetRerunOf(), "; ")
		}
		return domain.StageOutcome{Status: domain.StageSucceeded, At: at, Detail: detail}
	case buildv1.BuildStatus_BUILD_STATUS_FAILED, buildv1.BuildStatus_BUILD_STATUS_CANCELLED:
		cancelled := p.GetStatus() == buildv1.BuildStatus_BUILD_STATUS_CANCELLED
		reason := cmp.Or(p.GetFailureReason(), domain.StepFailure(p.GetFailedStep(), int(p.GetExitCode())))
		if reason == "" && !cancelled {
			reason = "the build failed"
		}
		return domain.StageOutcome{
			Status: domain.StageFailed, At: at, Reason: reason, FailedStep: p.GetFailedStep(),
			ExitCode: int(p.GetExitCode()), LastLogLines: p.GetLastLogLines(), Cancelled: cancelled,
		}
	case buildv1.BuildStatus_BUILD_STATUS_QUEUED, buildv1.BuildStatus_BUILD_STATUS_RUNNING:
		return domain.StageOutcome{Status: domain.StageRunning}
	}
	return domain.StageOutcome{}
}

func artifactsDetail(artifacts []*buildv1.Artifact) string {
	if len(artifacts) == 0 {
		return ""
	}
	names := make([]string, len(artifacts))
	for i, a := range artifacts {
		names[i] = a.GetName()
	}
	noun := "artifacts"
	if len(names) == 1 {
		noun = "artifact"
	}
	return fmt.Sprintf("%d %s: %s", len(names), noun, strings.Join(names, ", "))
}

// testOutcome is what a TestRunFinished says of the test stage.
func testOutcome(p *testeventsv1.TestRunFinished, at time.Time) domain.StageOutcome {
	c := p.GetCounts()
	counts := domain.TestCounts(int(c.GetPassed()), int(c.GetFailed()), int(c.GetSkipped()))
	switch p.GetStatus() {
	case testv1.TestRunStatus_TEST_RUN_STATUS_PASSED:
		if p.GetReusedTestRun() != "" {
			counts += "; reused"
		}
		return domain.StageOutcome{Status: domain.StageSucceeded, At: at, Detail: counts}
	case testv1.TestRunStatus_TEST_RUN_STATUS_FAILED, testv1.TestRunStatus_TEST_RUN_STATUS_ERROR:
		var parts []string
		if r := cmp.Or(p.GetFailureReason(), domain.StepFailure(p.GetFailedStep(), int(p.GetExitCode()))); r != "" {
			parts = append(parts, r)
		}
		parts = append(parts, counts)
		if cases := p.GetFailedCases(); len(cases) > 0 {
			parts = append(parts, "failing: "+strings.Join(cases, ", "))
		}
		return domain.StageOutcome{
			Status: domain.StageFailed, At: at, Reason: strings.Join(parts, "; "), FailedStep: p.GetFailedStep(),
			ExitCode: int(p.GetExitCode()), LastLogLines: p.GetLastLogLines(), Detail: counts,
		}
	case testv1.TestRunStatus_TEST_RUN_STATUS_CANCELLED:
		return domain.StageOutcome{Status: domain.StageFailed, At: at, Reason: p.GetFailureReason(), Detail: counts, Cancelled: true}
	case testv1.TestRunStatus_TEST_RUN_STATUS_RUNNING:
		return domain.StageOutcome{Status: domain.StageRunning}
	}
	return domain.StageOutcome{}
}

// releaseOutcome is what a ReleaseFinished says of the release stage.
func releaseOutcome(p *releaseeventsv1.ReleaseFinished, at time.Time) domain.StageOutcome {
	switch p.GetOutcome() {
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED:
		// The reason, if any, says which environments were left alone.
		return domain.StageOutcome{Status: domain.StageSucceeded, At: at, Reason: p.GetReason()}
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED:
		reason := cmp.Or(p.GetReason(), "a deployment failed")
		if p.GetRolledBack() && !strings.Contains(reason, "rolled back") {
			reason += "; rolled back"
		}
		return domain.StageOutcome{Status: domain.StageFailed, At: at, Reason: reason}
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED:
		return domain.StageOutcome{Status: domain.StageSkipped, At: at, Reason: cmp.Or(p.GetReason(), "nothing to release")}
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_CANCELLED:
		return domain.StageOutcome{Status: domain.StageFailed, At: at, Reason: p.GetReason(), Cancelled: true}
	}
	return domain.StageOutcome{}
}

func tokenToProto(t domain.Token) *sourcev1.Token {
	role, _ := auth.ParseRole(t.Role)
	return &sourcev1.Token{
		Id:           t.ID,
		Name:         t.Name,
		Role:         role,
		Repositories: t.Repositories,
		CreatedAt:    prototime.Timestamp(t.CreatedAt),
		CreatedBy:    t.CreatedBy,
		ExpiresAt:    prototime.Timestamp(t.ExpiresAt), // nil when zero
		RevokedAt:    prototime.Timestamp(t.RevokedAt),
	}
}

func secretToProto(s domain.Secret) *sourcev1.Secret {
	return &sourcev1.Secret{
		Repository: s.Repository, Name: s.Name, UpdatedBy: s.UpdatedBy,
		CreatedAt: prototime.Timestamp(s.CreatedAt), UpdatedAt: prototime.Timestamp(s.UpdatedAt),
	}
}

func auditEntryFromProto(e *auditv1.AuditEntry) domain.AuditEntry {
	return domain.AuditEntry{
		ID: e.GetId(), Time: prototime.Time(e.GetTime()), Service: e.GetService(), Procedure: e.GetProcedure(), Action: e.GetAction(),
		ActorKind: e.GetActorKind(), ActorID: e.GetActorId(), ActorName: e.GetActorName(), ActorRole: e.GetActorRole(),
		Repository: e.GetRepository(), Target: e.GetTarget(), Outcome: e.GetOutcome(), RequestID: e.GetRequestId(),
	}
}

func auditEntryToProto(e domain.AuditEntry) *auditv1.AuditEntry {
	return &auditv1.AuditEntry{
		Id: e.ID, Time: prototime.Timestamp(e.Time), Service: e.Service, Procedure: e.Procedure, Action: e.Action,
		ActorKind: e.ActorKind, ActorId: e.ActorID, ActorName: e.ActorName, ActorRole: e.ActorRole,
		Repository: e.Repository, Target: e.Target, Outcome: e.Outcome, RequestId: e.RequestID,
	}
}

func auditFilterFromProto(req *sourcev1.ListAuditEntriesRequest) domain.AuditFilter {
	return domain.AuditFilter{
		Repository: req.GetRepository(), Actor: req.GetActor(), Action: req.GetAction(),
		Since: prototime.Time(req.GetSince()), Until: prototime.Time(req.GetUntil()),
	}
}
