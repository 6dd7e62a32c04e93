package tests

import (
	"context"
	"log/slog"

	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/rpcserver"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
)

// Handler serves the TestService Connect API.
type Handler struct {
	svc *Service
}

var _ testv1connect.TestServiceHandler = (*Handler)(nil)

// NewHandler makes the Connect handler over svc.
func NewHandler(svc *Service) *Handler { return &Handler{svc: svc} }

// NewRoute mounts the handler with the options every handler gets
// (validation, error mapping).
func NewRoute(h *Handler, log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) rpcserver.Route {
	path, handler := testv1connect.NewTestServiceHandler(h, rpcserver.HandlerOptions(log, guard, recorder)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: testv1connect.TestServiceName}
}

// GetTestRun returns a test run with its steps, suites and counts.
func (h *Handler) GetTestRun(ctx context.Context, req *testv1.GetTestRunRequest) (*testv1.GetTestRunResponse, error) {
	run, err := h.svc.TestRun(ctx, req.GetId(), req.GetRunId())
	if err != nil {
		return nil, err
	}
	return &testv1.GetTestRunResponse{TestRun: testRunToProto(run)}, nil
}

// ListTestCases returns a page of a test run's cases, optionally of one
// status.
func (h *Handler) ListTestCases(ctx context.Context, req *testv1.ListTestCasesRequest) (*testv1.ListTestCasesResponse, error) {
	page, err := paging.Request(req.GetPageSize(), 0, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	cases, next, err := h.svc.Cases(ctx, req.GetId(), req.GetRunId(), caseStatusFromProto(req.GetStatus()), page)
	if err != nil {
		return nil, err
	}
	res := &testv1.ListTestCasesResponse{Cases: make([]*testv1.TestCase, 0, len(cases)), NextPageToken: next}
	for _, c := range cases {
		res.Cases = append(res.Cases, caseToProto(c))
	}
	return res, nil
}

// GetLogs returns stored test step log lines from a sequence number on.
func (h *Handler) GetLogs(ctx context.Context, req *testv1.GetLogsRequest) (*testv1.GetLogsResponse, error) {
	page, err := h.svc.Logs(ctx, req.GetRunId(), req.GetStep(), req.GetFromSeq(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return &testv1.GetLogsResponse{NextSeq: page.Next, Complete: page.Complete, Lines: linesToProto(page.Lines)}, nil
}
