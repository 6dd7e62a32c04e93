package build

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/steplog"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	"github.com/sluicehq/sluice/services/build/domain"
)

// Handler serves sluice.build.v1.BuildService.
type Handler struct {
	svc *Service
}

var _ buildv1connect.BuildServiceHandler = (*Handler)(nil)

// NewHandler makes the Connect handler over svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// NewRoute mounts h with the options every Sluice handler gets
// (validation, error mapping).
func NewRoute(h *Handler, log *slog.Logger) rpcserver.Route {
	path, handler := buildv1connect.NewBuildServiceHandler(h, rpcserver.HandlerOptions(log)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: buildv1connect.BuildServiceName}
}

// GetBuild returns a build by its id or its run id.
func (h *Handler) GetBuild(ctx context.Context, req *buildv1.GetBuildRequest) (*buildv1.GetBuildResponse, error) {
	b, err := h.svc.Build(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &buildv1.GetBuildResponse{Build: buildToProto(b)}, nil
}

// ListBuilds returns the newest builds.
func (h *Handler) ListBuilds(ctx context.Context, req *buildv1.ListBuildsRequest) (*buildv1.ListBuildsResponse, error) {
	builds, err := h.svc.Builds(ctx, int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	res := &buildv1.ListBuildsResponse{}
	for _, b := range builds {
		res.Builds = append(res.Builds, buildToProto(b))
	}
	return res, nil
}

// GetLogs returns stored log lines of a run's build.
func (h *Handler) GetLogs(ctx context.Context, req *buildv1.GetLogsRequest) (*buildv1.GetLogsResponse, error) {
	page, err := h.svc.Logs(ctx, req.GetRunId(), req.GetStep(), req.GetFromSeq(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return &buildv1.GetLogsResponse{Lines: linesToProto(page.Lines), NextSeq: page.Next, Complete: page.Complete}, nil
}

// TailLogs streams a run's log lines as they are stored, until the build
// ends. A run whose build has not started yet is waited for.
func (h *Handler) TailLogs(ctx context.Context, req *buildv1.TailLogsRequest, stream *connect.ServerStream[buildv1.TailLogsResponse]) error {
	// Send the response headers now: the first lines may be a long way off
	// (the run may still be queued) and clients wait for the headers.
	if err := stream.Send(nil); err != nil {
		return err
	}
	return h.svc.TailLogs(ctx, req.GetRunId(), req.GetStep(), req.GetFromSeq(), func(lines []steplog.Line) error {
		return stream.Send(&buildv1.TailLogsResponse{Lines: linesToProto(lines)})
	})
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
		})
	}
	for _, a := range b.Artifacts {
		pb.Artifacts = append(pb.Artifacts, artifactToProto(a))
	}
	return pb
}

func artifactToProto(a domain.Artifact) *buildv1.Artifact {
	return &buildv1.Artifact{Name: a.Name, Object: a.Object, Sha256: a.SHA256, Size: a.Size}
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
