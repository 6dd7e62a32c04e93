package release

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"

	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"

	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/steplog"
)

// Handler is the ReleaseService Connect handler.
type Handler struct {
	svc *Service
}

var _ releasev1connect.ReleaseServiceHandler = (*Handler)(nil)

// NewHandler makes the handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// NewRoute mounts h with the platform's handler options (validation, error
// mapping).
func NewRoute(h *Handler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := releasev1connect.NewReleaseServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: releasev1connect.ReleaseServiceName}
}

// ListReleases lists a repository's releases, or a run's, newest first.
func (h *Handler) ListReleases(ctx context.Context, req *releasev1.ListReleasesRequest) (*releasev1.ListReleasesResponse, error) {
	page, err := paging.Request(req.GetPageSize(), req.GetLimit(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	rels, next, err := h.svc.ListReleases(ctx, ListFilter{Repository: req.GetRepository(), RunID: req.GetRunId()}, page)
	if err != nil {
		return nil, err
	}
	return &releasev1.ListReleasesResponse{Releases: releasesProto(rels), NextPageToken: next}, nil
}

// ListDeployments lists a repository's deployments, or a run's, newest
// first.
func (h *Handler) ListDeployments(ctx context.Context, req *releasev1.ListDeploymentsRequest) (*releasev1.ListDeploymentsResponse, error) {
	page, err := paging.Request(req.GetPageSize(), req.GetLimit(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	f := ListFilter{Repository: req.GetRepository(), RunID: req.GetRunId(), Environment: req.GetEnvironment()}
	ds, next, err := h.svc.ListDeployments(ctx, f, page)
	if err != nil {
		return nil, err
	}
	return &releasev1.ListDeploymentsResponse{Deployments: deploymentsProto(ds), NextPageToken: next}, nil
}

// Rollback redeploys an earlier release and returns the deployment.
func (h *Handler) Rollback(ctx context.Context, req *releasev1.RollbackRequest) (*releasev1.RollbackResponse, error) {
	d, err := h.svc.Rollback(ctx, req.GetRepository(), req.GetEnvironment(), req.GetToVersion())
	if err != nil {
		return nil, err
	}
	return &releasev1.RollbackResponse{Deployment: deploymentProto(d)}, nil
}

// GetLogs returns stored lines of a run's release log.
func (h *Handler) GetLogs(ctx context.Context, req *releasev1.GetLogsRequest) (*releasev1.GetLogsResponse, error) {
	page, steps, err := h.svc.Logs(ctx, req.GetRunId(), req.GetStep(), req.GetFromSeq(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return &releasev1.GetLogsResponse{Lines: linesProto(page.Lines), NextSeq: page.Next, Complete: page.Complete, Steps: steps}, nil
}

// TailLogs streams a run's release log lines as they are stored, until the
// run's release stage ends.
func (h *Handler) TailLogs(ctx context.Context, req *releasev1.TailLogsRequest, stream *connect.ServerStream[releasev1.TailLogsResponse]) error {
	return h.svc.TailLogs(ctx, req.GetRunId(), req.GetStep(), req.GetFromSeq(), func(lines []steplog.Line) error {
		if len(lines) == 0 {
			// The log exists: send the response headers now, as the first
			// lines may be a long way off and clients wait for them.
			return stream.Send(nil)
		}
		return stream.Send(&releasev1.TailLogsResponse{Lines: linesProto(lines)})
	})
}
