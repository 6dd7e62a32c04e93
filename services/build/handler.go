package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/steplog"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
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
func NewRoute(h *Handler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := buildv1connect.NewBuildServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: buildv1connect.BuildServiceName}
}

// GetBuild returns a build by its run id, or by id (a build id or a run
// id).
func (h *Handler) GetBuild(ctx context.Context, req *buildv1.GetBuildRequest) (*buildv1.GetBuildResponse, error) {
	b, err := h.svc.Build(ctx, req.GetId(), req.GetRunId())
	if err != nil {
		return nil, err
	}
	return &buildv1.GetBuildResponse{Build: buildToProto(b)}, nil
}

// ListBuilds returns a page of builds, newest first.
func (h *Handler) ListBuilds(ctx context.Context, req *buildv1.ListBuildsRequest) (*buildv1.ListBuildsResponse, error) {
	page, err := paging.Request(req.GetPageSize(), req.GetLimit(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	builds, next, err := h.svc.Builds(ctx, page)
	if err != nil {
		return nil, err
	}
	res := &buildv1.ListBuildsResponse{NextPageToken: next}
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

// artifactChunk is the most content one GetArtifactContent message carries.
const artifactChunk = 256 << 10

// GetArtifactContent streams one artifact of a run's build: its record, then
// its content, checked against the record as it is read.
func (h *Handler) GetArtifactContent(ctx context.Context, req *buildv1.GetArtifactContentRequest, stream *connect.ServerStream[buildv1.GetArtifactContentResponse]) error {
	a, r, err := h.svc.OpenArtifact(ctx, req.GetRunId(), req.GetName())
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	if err := stream.Send(&buildv1.GetArtifactContentResponse{Artifact: artifactToProto(a)}); err != nil {
		return err
	}
	buf := make([]byte, artifactChunk)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&buildv1.GetArtifactContentResponse{Chunk: buf[:n]}); err != nil {
				return err
			}
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return nil
		case errors.Is(err, artifacts.ErrCorrupt):
			return fmt.Errorf("%w: %w", err, apierror.ErrDataLoss)
		case err != nil:
			return err
		}
	}
}

// TailLogs streams a run's log lines as they are stored, until the build
// ends. A run whose build has not started yet is waited for.
func (h *Handler) TailLogs(ctx context.Context, req *buildv1.TailLogsRequest, stream *connect.ServerStream[buildv1.TailLogsResponse]) error {
	return h.svc.TailLogs(ctx, req.GetRunId(), req.GetStep(), req.GetFromSeq(), func(lines []steplog.Line) error {
		if len(lines) == 0 {
			// The caller may read the log: send the response headers now,
			// as the first lines may be a long way off (the run may still
			// be queued) and clients wait for them.
			return stream.Send(nil)
		}
		return stream.Send(&buildv1.TailLogsResponse{Lines: linesToProto(lines)})
	})
}
