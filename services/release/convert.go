package release

import (
	"github.com/sluicehq/sluice/platform/prototime"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"

	"github.com/sluicehq/sluice/services/release/domain"
)

func repositoryRef(r domain.Repository) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: r.ID, Name: r.Name, Url: r.URL}
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

func deploymentProto(d domain.Deployment) *releasev1.Deployment {
	return &releasev1.Deployment{
		Id:          d.ID,
		Repository:  d.Repository,
		Environment: d.Environment,
		Version:     d.Version,
		ReleaseId:   d.ReleaseID,
		Status:      deploymentStatusProto(d.Status),
		Reason:      d.Reason,
		Rollback:    d.Rollback,
		CreateTime:  prototime.Timestamp(d.CreatedAt),
		EndTime:     prototime.Timestamp(d.EndedAt),
		RunId:       d.RunID,
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
