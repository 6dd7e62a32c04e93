package source

import (
	"context"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/rpcserver"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/source/domain"
)

// Handler is the SourceService Connect handler: request in, Service call,
// response out (converted by convert.go).
type Handler struct {
	svc *Service
}

var _ sourcev1connect.SourceServiceHandler = (*Handler)(nil)

// NewHandler makes the Connect handler.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// NewRoute mounts h with the options every handler gets (validation, error
// mapping).
func NewRoute(h *Handler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := sourcev1connect.NewSourceServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: sourcev1connect.SourceServiceName}
}

// CreateRepository registers a repository.
func (h *Handler) CreateRepository(ctx context.Context, req *sourcev1.CreateRepositoryRequest) (*sourcev1.CreateRepositoryResponse, error) {
	repo, created, err := h.svc.CreateRepository(ctx, newRepositoryFromProto(req))
	if err != nil {
		return nil, err
	}
	if !created {
		audit.Unchanged(ctx, audit.Target{Repository: repo.Name, ID: repo.ID})
	}
	return &sourcev1.CreateRepositoryResponse{Repository: repositoryToProto(repo), Created: created}, nil
}

// ListRepositories lists the repositories, a page at a time.
func (h *Handler) ListRepositories(ctx context.Context, req *sourcev1.ListRepositoriesRequest) (*sourcev1.ListRepositoriesResponse, error) {
	page, err := paging.Request(req.GetPageSize(), 0, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	repos, next, err := h.svc.ListRepositories(ctx, page)
	if err != nil {
		return nil, err
	}
	res := &sourcev1.ListRepositoriesResponse{NextPageToken: next}
	for _, r := range repos {
		res.Repositories = append(res.Repositories, repositoryToProto(r))
	}
	return res, nil
}

// GetRepository reads one repository.
func (h *Handler) GetRepository(ctx context.Context, req *sourcev1.GetRepositoryRequest) (*sourcev1.GetRepositoryResponse, error) {
	repo, err := h.svc.GetRepository(ctx, req.GetRepository())
	if err != nil {
		return nil, err
	}
	return &sourcev1.GetRepositoryResponse{Repository: repositoryToProto(repo)}, nil
}

// TriggerRun starts a run.
func (h *Handler) TriggerRun(ctx context.Context, req *sourcev1.TriggerRunRequest) (*sourcev1.TriggerRunResponse, error) {
	run, err := h.svc.TriggerRun(ctx, req.GetRepository(), req.GetRef())
	if err != nil {
		return nil, err
	}
	return &sourcev1.TriggerRunResponse{Run: runToProto(run)}, nil
}

// ListRuns lists runs, newest first, a page at a time.
func (h *Handler) ListRuns(ctx context.Context, req *sourcev1.ListRunsRequest) (*sourcev1.ListRunsResponse, error) {
	page, err := paging.Request(req.GetPageSize(), req.GetLimit(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	runs, next, err := h.svc.ListRuns(ctx, req.GetRepository(), req.GetPullRequest(), page)
	if err != nil {
		return nil, err
	}
	res := &sourcev1.ListRunsResponse{NextPageToken: next}
	for _, r := range runs {
		res.Runs = append(res.Runs, runToProto(r))
	}
	return res, nil
}

// GetRun reads one run with its pipeline.
func (h *Handler) GetRun(ctx context.Context, req *sourcev1.GetRunRequest) (*sourcev1.GetRunResponse, error) {
	run, err := h.svc.GetRun(ctx, req.GetRunId())
	if err != nil {
		return nil, err
	}
	return &sourcev1.GetRunResponse{Run: runToProto(run)}, nil
}

// RerunRun starts a new run of an ended run's commit.
func (h *Handler) RerunRun(ctx context.Context, req *sourcev1.RerunRunRequest) (*sourcev1.RerunRunResponse, error) {
	run, err := h.svc.RerunRun(ctx, req.GetRunId(), req.GetFailed())
	if err != nil {
		return nil, err
	}
	return &sourcev1.RerunRunResponse{Run: runToProto(run)}, nil
}

// CancelRun asks for a run to be cancelled.
func (h *Handler) CancelRun(ctx context.Context, req *sourcev1.CancelRunRequest) (*sourcev1.CancelRunResponse, error) {
	run, err := h.svc.CancelRun(ctx, req.GetRunId(), req.GetForce())
	if err != nil {
		return nil, err
	}
	return &sourcev1.CancelRunResponse{Run: runToProto(run)}, nil
}

// WatchRun streams the run until it ends.
func (h *Handler) WatchRun(ctx context.Context, req *sourcev1.WatchRunRequest, stream *connect.ServerStream[sourcev1.WatchRunResponse]) error {
	return h.svc.WatchRun(ctx, req.GetRunId(), func(run domain.Run) error {
		return stream.Send(&sourcev1.WatchRunResponse{Run: runToProto(run)})
	})
}

// ListCommits lists a range of commits, a page at a time.
func (h *Handler) ListCommits(ctx context.Context, req *sourcev1.ListCommitsRequest) (*sourcev1.ListCommitsResponse, error) {
	page, err := commitsPage(req)
	if err != nil {
		return nil, err
	}
	commits, next, err := h.svc.ListCommits(ctx, req.GetRepository(), req.GetFrom(), req.GetTo(), page)
	if err != nil {
		return nil, err
	}
	res := &sourcev1.ListCommitsResponse{NextPageToken: next}
	for _, c := range commits {
		res.Commits = append(res.Commits, commitToProto(c))
	}
	return res, nil
}

// AccessHandler is the AccessService Connect handler.
type AccessHandler struct {
	svc *Service
}

var _ sourcev1connect.AccessServiceHandler = (*AccessHandler)(nil)

// NewAccessHandler makes the AccessService handler.
func NewAccessHandler(svc *Service) *AccessHandler { return &AccessHandler{svc: svc} }

// NewAccessRoute mounts h with the options every handler gets.
func NewAccessRoute(h *AccessHandler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := sourcev1connect.NewAccessServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: sourcev1connect.AccessServiceName}
}

// CreateToken makes a token and returns its secret once.
func (h *AccessHandler) CreateToken(ctx context.Context, req *sourcev1.CreateTokenRequest) (*sourcev1.CreateTokenResponse, error) {
	t, secret, err := h.svc.CreateToken(ctx, NewToken{
		Name: req.GetName(), Role: auth.RoleName(req.GetRole()), Repositories: req.GetRepositories(),
		ExpiresIn: req.GetExpiresIn().AsDuration(),
	})
	if err != nil {
		return nil, err
	}
	return &sourcev1.CreateTokenResponse{Token: tokenToProto(t), Secret: secret}, nil
}

// ListTokens lists the tokens, a page at a time.
func (h *AccessHandler) ListTokens(ctx context.Context, req *sourcev1.ListTokensRequest) (*sourcev1.ListTokensResponse, error) {
	page, err := paging.Request(req.GetPageSize(), 0, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	tokens, next, err := h.svc.ListTokens(ctx, req.GetIncludeRevoked(), page)
	if err != nil {
		return nil, err
	}
	res := &sourcev1.ListTokensResponse{NextPageToken: next}
	for _, t := range tokens {
		res.Tokens = append(res.Tokens, tokenToProto(t))
	}
	return res, nil
}

// RevokeToken revokes a token.
func (h *AccessHandler) RevokeToken(ctx context.Context, req *sourcev1.RevokeTokenRequest) (*sourcev1.RevokeTokenResponse, error) {
	t, err := h.svc.RevokeToken(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &sourcev1.RevokeTokenResponse{Token: tokenToProto(t)}, nil
}

// WhoAmI describes the caller's identity.
func (h *AccessHandler) WhoAmI(ctx context.Context, _ *sourcev1.WhoAmIRequest) (*sourcev1.WhoAmIResponse, error) {
	id, _ := auth.FromContext(ctx)
	return &sourcev1.WhoAmIResponse{
		Kind: string(id.Kind), Name: id.Name, Role: id.Role, Repositories: id.Repositories, TokenId: id.TokenID,
		ExpiresAt: prototime.Timestamp(id.ExpiresAt), // nil when zero
	}, nil
}

// SecretHandler is the SecretService Connect handler.
type SecretHandler struct {
	svc *Service
}

var _ sourcev1connect.SecretServiceHandler = (*SecretHandler)(nil)

// NewSecretHandler makes the SecretService handler.
func NewSecretHandler(svc *Service) *SecretHandler { return &SecretHandler{svc: svc} }

// NewSecretRoute mounts h with the options every handler gets.
func NewSecretRoute(h *SecretHandler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := sourcev1connect.NewSecretServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: sourcev1connect.SecretServiceName}
}

// SetSecret stores a secret.
func (h *SecretHandler) SetSecret(ctx context.Context, req *sourcev1.SetSecretRequest) (*sourcev1.SetSecretResponse, error) {
	sec, err := h.svc.SetSecret(ctx, req.GetRepository(), req.GetName(), req.GetValue())
	if err != nil {
		return nil, err
	}
	return &sourcev1.SetSecretResponse{Secret: secretToProto(sec)}, nil
}

// ListSecrets lists secrets without their values.
func (h *SecretHandler) ListSecrets(ctx context.Context, req *sourcev1.ListSecretsRequest) (*sourcev1.ListSecretsResponse, error) {
	secrets, err := h.svc.ListSecrets(ctx, req.GetRepository())
	if err != nil {
		return nil, err
	}
	res := &sourcev1.ListSecretsResponse{}
	for _, sec := range secrets {
		res.Secrets = append(res.Secrets, secretToProto(sec))
	}
	return res, nil
}

// DeleteSecret removes a secret.
func (h *SecretHandler) DeleteSecret(ctx context.Context, req *sourcev1.DeleteSecretRequest) (*sourcev1.DeleteSecretResponse, error) {
	sec, err := h.svc.DeleteSecret(ctx, req.GetRepository(), req.GetName())
	if err != nil {
		return nil, err
	}
	return &sourcev1.DeleteSecretResponse{Secret: secretToProto(sec)}, nil
}

// ResolveSecrets hands a service the values a run's pipeline asks for.
func (h *SecretHandler) ResolveSecrets(ctx context.Context, req *sourcev1.ResolveSecretsRequest) (*sourcev1.ResolveSecretsResponse, error) {
	values, err := h.svc.ResolveSecrets(ctx, req.GetRunId(), req.GetNames())
	if err != nil {
		return nil, err
	}
	return &sourcev1.ResolveSecretsResponse{Values: values}, nil
}

// AuditHandler is the AuditService Connect handler.
type AuditHandler struct {
	svc *Service
}

var _ sourcev1connect.AuditServiceHandler = (*AuditHandler)(nil)

// NewAuditHandler makes the AuditService handler.
func NewAuditHandler(svc *Service) *AuditHandler { return &AuditHandler{svc: svc} }

// NewAuditRoute mounts h with the options every handler gets.
func NewAuditRoute(h *AuditHandler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := sourcev1connect.NewAuditServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: sourcev1connect.AuditServiceName}
}

// ListAuditEntries lists the audit log, a page at a time.
func (h *AuditHandler) ListAuditEntries(ctx context.Context, req *sourcev1.ListAuditEntriesRequest) (*sourcev1.ListAuditEntriesResponse, error) {
	page, err := paging.Request(req.GetPageSize(), 0, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	entries, next, err := h.svc.ListAuditEntries(ctx, auditFilterFromProto(req), page)
	if err != nil {
		return nil, err
	}
	res := &sourcev1.ListAuditEntriesResponse{NextPageToken: next}
	for _, e := range entries {
		res.Entries = append(res.Entries, auditEntryToProto(e))
	}
	return res, nil
}
