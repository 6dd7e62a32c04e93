package release

import (
	"github.com/sluicehq/sluice/platform/artifacts"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"

	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/steplog"
	"github.com/sluicehq/sluice/services/release/domain"
)

// The conversions between the release service's domain and its protos
// (its API, its events, and the events and API of source and build that
// it reads).

func repositoryOf(r *sourceeventsv1.RepositoryRef) domain.Repository {
	return domain.Repository{ID: r.GetId(), Name: r.GetName(), URL: r.GetUrl(), GitCredential: gitauth.KindFromProto(r.GetGitCredential())}
}

func repositoryRef(r domain.Repository) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: r.ID, Name: r.Name, Url: r.URL, GitCredential: r.GitCredential.Proto()}
}

// releaseSpecOf turns the pipeline's release section into domain terms.
func releaseSpecOf(p *sourcev1.Pipeline) domain.ReleaseSpec {
	r := p.GetRelease()
	if r == nil {
		return domain.ReleaseSpec{}
	}
	spec := domain.ReleaseSpec{Present: true, Branches: r.GetBranches(), Tags: r.GetTags()}
	for _, e := range r.GetEnvironments() {
		env := domain.Environment{
			Name:          e.GetName(),
			Deploy:        e.GetDeploy(),
			DeployTimeout: e.GetDeployTimeout().AsDuration(),
			Env:           e.GetEnv(),
			Secrets:       e.GetSecrets(),

			RedeployOnInterrupt: e.GetOnInterrupt() == sourcev1.OnInterrupt_ON_INTERRUPT_REDEPLOY,
		}
		if v := e.GetVerify(); v != nil {
			env.Verify = domain.Verify{HTTP: v.GetHttp(), Command: v.GetCommand(), Timeout: v.GetTimeout().AsDuration()}
		}
		spec.Environments = append(spec.Environments, env)
	}
	return spec
}

func commitsOf(cs []*sourcev1.Commit) []domain.Commit {
	out := make([]domain.Commit, 0, len(cs))
	for _, c := range cs {
		out = append(out, domain.Commit{SHA: c.GetSha(), Message: c.GetMessage()})
	}
	return out
}

func artifactsOf(as []*buildv1.Artifact) []domain.Artifact {
	var out []domain.Artifact
	for _, a := range as {
		out = append(out, domain.Artifact{Name: a.GetName(), Object: a.GetObject(), SHA256: a.GetSha256(), Size: a.GetSize(), Format: artifacts.FormatFromProto(a.GetFormat())})
	}
	return out
}

// outcomeName is how a stage's outcome is stored.
func outcomeName(o releaseeventsv1.ReleaseOutcome) string {
	switch o {
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED:
		return "SUCCEEDED"
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED:
		return "FAILED"
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED:
		return "SKIPPED"
	case releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_CANCELLED:
		return "CANCELLED"
	}
	return ""
}

func releasesProto(rs []domain.Release) []*releasev1.Release {
	out := make([]*releasev1.Release, 0, len(rs))
	for _, r := range rs {
		out = append(out, releaseProto(r))
	}
	return out
}

func releaseProto(r domain.Release) *releasev1.Release {
	out := &releasev1.Release{
		Id:         r.ID,
		Repository: r.Repository.Name,
		Version:    r.Version.String(),
		Commit:     r.Commit,
		RunId:      r.RunID,
		Changelog:  r.Changelog,
		Status:     releaseStatusProto(r.Status),
		CreateTime: prototime.Timestamp(r.CreatedAt),
		PruneTime:  prototime.Timestamp(r.PrunedAt),
	}
	for _, a := range r.Artifacts {
		out.Artifacts = append(out.Artifacts, &releasev1.ReleaseArtifact{Name: a.Name, Object: a.Object, Sha256: a.SHA256, Size: a.Size})
	}
	return out
}

func releaseStatusProto(s domain.ReleaseStatus) releasev1.ReleaseStatus {
	switch s {
	case domain.ReleasePublished:
		return releasev1.ReleaseStatus_RELEASE_STATUS_PUBLISHED
	case domain.ReleaseDeployed:
		return releasev1.ReleaseStatus_RELEASE_STATUS_DEPLOYED
	case domain.ReleaseBad:
		return releasev1.ReleaseStatus_RELEASE_STATUS_BAD
	}
	return releasev1.ReleaseStatus_RELEASE_STATUS_UNSPECIFIED
}

func deploymentsProto(ds []domain.Deployment) []*releasev1.Deployment {
	out := make([]*releasev1.Deployment, 0, len(ds))
	for _, d := range ds {
		out = append(out, deploymentProto(d))
	}
	return out
}

func deploymentProto(d domain.Deployment) *releasev1.Deployment {
	return &releasev1.Deployment{
		Id:           d.ID,
		Repository:   d.Repository,
		Environment:  d.Environment,
		Version:      d.Version,
		ReleaseId:    d.ReleaseID,
		Status:       deploymentStatusProto(d.Status),
		Reason:       d.Reason,
		Rollback:     d.Rollback,
		CreateTime:   prototime.Timestamp(d.CreatedAt),
		EndTime:      prototime.Timestamp(d.EndedAt),
		RunId:        d.RunID,
		FailedStep:   d.FailedStep,
		LastLogLines: d.LastLogLines,
		Attempts:     uint32(max(d.Attempts, 0)), //nolint:gosec // not negative
	}
}

func deploymentStatusProto(s domain.DeploymentStatus) releasev1.DeploymentStatus {
	switch s {
	case domain.DeploymentDeploying:
		return releasev1.DeploymentStatus_DEPLOYMENT_STATUS_DEPLOYING
	case domain.DeploymentVerifying:
		return releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFYING
	case domain.DeploymentVerified:
		return releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED
	case domain.DeploymentFailed:
		return releasev1.DeploymentStatus_DEPLOYMENT_STATUS_FAILED
	case domain.DeploymentRolledBack:
		return releasev1.DeploymentStatus_DEPLOYMENT_STATUS_ROLLED_BACK
	}
	return releasev1.DeploymentStatus_DEPLOYMENT_STATUS_UNSPECIFIED
}

func linesProto(lines []steplog.Line) []*releasev1.LogLine {
	out := make([]*releasev1.LogLine, len(lines))
	for i, l := range lines {
		out[i] = &releasev1.LogLine{Seq: l.Seq, Step: l.Step, Text: l.Text, Time: prototime.Timestamp(l.Time), Stream: l.Stream}
	}
	return out
}
