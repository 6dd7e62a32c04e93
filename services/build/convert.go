package build

import (
	"maps"
	"time"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/executor/stagespec"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/stepcache"
	"github.com/sluicehq/sluice/platform/stepgraph"
	"github.com/sluicehq/sluice/platform/steplog"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	"github.com/sluicehq/sluice/services/build/domain"
)

// runFromEvent turns a RunRequested (validated on receipt) into the run
// the build stage works on.
func runFromEvent(req *sourceeventsv1.RunRequested) domain.Run {
	run := domain.Run{
		ID: req.GetRunId(),
		Repository: domain.Repository{
			ID:   req.GetRepository().GetId(),
			Name: req.GetRepository().GetName(),
			URL:  req.GetRepository().GetUrl(),

			GitCredential: gitauth.KindFromProto(req.GetRepository().GetGitCredential()),
			DefaultBranch: req.GetRepository().GetDefaultBranch(),
		},
		Commit: req.GetCommit(),
		Branch: req.GetBranch(),
	}
	for _, st := range req.GetPipeline().GetBuild().GetSteps() {
		var timeout time.Duration
		if st.GetTimeout() != nil {
			timeout = st.GetTimeout().AsDuration()
		}
		run.Steps = append(run.Steps, domain.StepSpec{
			Name:    stepgraph.StepLabel(st),
			Run:     st.GetRun(),
			Timeout: timeout,
			Env:     maps.Clone(st.GetEnv()),
			Secrets: maps.Clone(st.GetSecrets()),
			Image:   st.GetImage(),
		})
	}
	run.Services = stagespec.Services(req.GetPipeline().GetBuild().GetServices())
	run.Graph = stepgraph.Nodes(req.GetPipeline().GetBuild().GetSteps(), req.GetPipeline().GetBuild().GetPipelineMaxParallel())
	run.MaxParallel = req.GetPipeline().GetBuild().GetMaxParallel()
	run.Caches = stepcache.SpecsOf(req.GetPipeline().GetBuild().GetCaches())
	run.Facts = stepgraph.FactsOf(run.Repository.Name, run.Commit, req.GetRef(), run.Branch, req.GetTrigger(), req.GetChanges())
	for _, a := range req.GetPipeline().GetBuild().GetArtifacts() {
		run.Artifacts = append(run.Artifacts, domain.ArtifactSpec{Name: a.GetName(), Path: a.GetPath()})
	}
	return run
}

func repositoryRef(r domain.Repository) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: r.ID, Name: r.Name, Url: r.URL, GitCredential: r.GitCredential.Proto(), DefaultBranch: r.DefaultBranch}
}

func buildToProto(b domain.Build) *buildv1.Build {
	pb := &buildv1.Build{
		Id:            b.ID,
		RunId:         b.RunID,
		Repository:    b.Repository.Name,
		Commit:        b.Commit,
		Status:        buildStatusToProto(b.Status),
		FailureReason: b.Failure.Reason,
		CreateTime:    prototime.Timestamp(b.CreateTime),
		EndTime:       prototime.Timestamp(b.EndTime),
		Attempt:       int32(b.Attempt),
		FailedStep:    b.Failure.Step,
		ExitCode:      int32(b.Failure.ExitCode),
		LastLogLines:  b.Failure.LastLogLines,
		StartTime:     prototime.Timestamp(b.StartTime),
		StepDuration:  prototime.Duration(b.StepDuration),
		WorkerId:      b.WorkerID,
	}
	for _, st := range b.Steps {
		pb.Steps = append(pb.Steps, &buildv1.Step{
			Name:      st.Name,
			Status:    stepStatusToProto(st.Status),
			ExitCode:  int32(st.ExitCode),
			StartTime: prototime.Timestamp(st.StartTime),
			EndTime:   prototime.Timestamp(st.EndTime),
			Tries:     int32(st.Tries),
			Reason:    st.Reason,
		})
	}
	for _, a := range b.Artifacts {
		pb.Artifacts = append(pb.Artifacts, artifactToProto(a))
	}
	return pb
}

func artifactToProto(a domain.Artifact) *buildv1.Artifact {
	return &buildv1.Artifact{Name: a.Name, Object: a.Object, Sha256: a.SHA256, Size: a.Size, Format: artifacts.FormatToProto(a.Format)}
}

func linesToProto(lines []steplog.Line) []*buildv1.LogLine {
	out := make([]*buildv1.LogLine, len(lines))
	for i, l := range lines {
		out[i] = &buildv1.LogLine{Seq: l.Seq, Step: l.Step, Text: l.Text, Time: prototime.Timestamp(l.Time), Stream: l.Stream}
	}
	return out
}

func buildStatusToProto(s domain.Status) buildv1.BuildStatus {
	switch s {
	case domain.Queued:
		return buildv1.BuildStatus_BUILD_STATUS_QUEUED
	case domain.Running:
		return buildv1.BuildStatus_BUILD_STATUS_RUNNING
	case domain.Succeeded:
		return buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED
	case domain.Failed:
		return buildv1.BuildStatus_BUILD_STATUS_FAILED
	case domain.Cancelled:
		return buildv1.BuildStatus_BUILD_STATUS_CANCELLED
	}
	return buildv1.BuildStatus_BUILD_STATUS_UNSPECIFIED
}

func stepStatusToProto(s domain.StepStatus) buildv1.StepStatus {
	switch s {
	case domain.StepPending:
		return buildv1.StepStatus_STEP_STATUS_PENDING
	case domain.StepRunning:
		return buildv1.StepStatus_STEP_STATUS_RUNNING
	case domain.StepSucceeded:
		return buildv1.StepStatus_STEP_STATUS_SUCCEEDED
	case domain.StepFailed:
		return buildv1.StepStatus_STEP_STATUS_FAILED
	case domain.StepTimedOut:
		return buildv1.StepStatus_STEP_STATUS_TIMED_OUT
	case domain.StepCancelled:
		return buildv1.StepStatus_STEP_STATUS_CANCELLED
	case domain.StepSkipped:
		return buildv1.StepStatus_STEP_STATUS_SKIPPED
	}
	return buildv1.StepStatus_STEP_STATUS_UNSPECIFIED
}
