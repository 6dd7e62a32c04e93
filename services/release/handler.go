package release

import (
	"context"
	"log/slog"

	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"

	"github.com/sluicehq/sluice/platform/rpcserver"
)

// defaultLimit is the page size when a list request sets no limit.
const defaultLimit = 100

// Handler is the ReleaseService Connect handler.
type Handler struct {
	svc *Service
}

var _ releasev1connect.ReleaseServiceHandler = (*Handler)(nil)

// NewHandler makes the handler for svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// NewRoute mounts h with the platform's handler options (validation, error
// mapping).
func NewRoute(h *Handler, log *slog.Logger) rpcserver.Route {
	path, handler := releasev1connect.NewReleaseServiceHandler(h, rpcserver.HandlerOptions(log)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: releasev1connect.ReleaseServiceName}
}

func limitOf(n int32) int {
	if n <= 0 {
		return defaultLimit
	}
	return int(n)
}

// ListReleases lists a repository's releases, newest first.
func (h *Handler) ListReleases(ctx context.Context, req *releasev1.ListReleasesRequest) (*releasev1.ListReleasesResponse, error) {
	rels, err := h.svc.ListReleases(ctx, req.GetRepository(), limitOf(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	res := &releasev1.ListReleasesResponse{}
	for _, r := range rels {
		res.Releases = append(res.Releases, releaseProto(r))
	}
	return res, nil
}

// ListDeployments lists a repository's deployments, newest first.
func (h *Handler) ListDeployments(ctx context.Context, req *releasev1.ListDeploymentsRequest) (*releasev1.ListDeploymentsResponse, error) {
	ds, err := h.svc.ListDeployments(ctx, req.GetRepository(), req.GetEnvironment(), limitOf(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	res := &releasev1.ListDeploymentsResponse{}
	for _, d := range ds {
		res.Deployments = append(res.Deployments, deploymentProto(d))
	}
	return res, nil
}

// Rollback redeploys an earlier release and returns the deployment.
func (h *Handler) Rollback(ctx context.Context, req *releasev1.RollbackRequest) (*releasev1.RollbackResponse, error) {
	d, err := h.svc.Rollback(ctx, req.GetRepository(), req.GetEnvironment(), req.GetToVersion())
	if err != nil {
		return nil, err
	}
	return &releasev1.RollbackResponse{Deployment: deploymentProto(d)}, nil
}
