package tests

import (
	"context"
	"log/slog"

	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/rpcserver"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
	"github.com/sluicehq/sluice/services/tests/domain"
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
func NewRoute(h *Handler, log *slog.Logger) rpcserver.Route {
	path, handler := testv1connect.NewTestServiceHandler(h, rpcserver.HandlerOptions(log)...)
	return rpcserver.Route{Path: path, Handler: handler, Service: testv1connect.TestServiceName}
}

// GetTestRun returns a test run with its suites and counts.
func (h *Handler) GetTestRun(ctx context.Context, req *testv1.GetTestRunRequest) (*testv1.GetTestRunResponse, error) {
	run, suites, err := h.svc.TestRun(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &testv1.GetTestRunResponse{TestRun: testRunToProto(run, suites)}, nil
}

// ListTestCases returns a test run's cases, optionally of one status.
func (h *Handler) ListTestCases(ctx context.Context, req *testv1.ListTestCasesRequest) (*testv1.ListTestCasesResponse, error) {
	cases, err := h.svc.Cases(ctx, req.GetId(), caseStatusFromProto(req.GetStatus()))
	if err != nil {
		return nil, err
	}
	res := &testv1.ListTestCasesResponse{Cases: make([]*testv1.TestCase, 0, len(cases))}
	for _, c := range cases {
		res.Cases = append(res.Cases, &testv1.TestCase{
			Suite:    c.Suite,
			Name:     c.Name,
			Status:   caseStatusToProto(c.Status),
			Duration: prototime.Duration(c.Duration),
			Output:   c.Output,
		})
	}
	return res, nil
}

// GetLogs returns stored test step log lines from a sequence number on.
func (h *Handler) GetLogs(ctx context.Context, req *testv1.GetLogsRequest) (*testv1.GetLogsResponse, error) {
	page, err := h.svc.Logs(ctx, req.GetRunId(), req.GetStep(), req.GetFromSeq(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	res := &testv1.GetLogsResponse{NextSeq: page.Next, Complete: page.Complete, Lines: make([]*testv1.LogLine, 0, len(page.Lines))}
	for _, l := range page.Lines {
		res.Lines = append(res.Lines, &testv1.LogLine{
			Seq:    l.Seq,
			Step:   l.Step,
			Text:   l.Text,
			Time:   prototime.Timestamp(l.Time),
			Stream: l.Stream,
		})
	}
	return res, nil
}

func testRunToProto(r domain.TestRun, suites []domain.Suite) *testv1.TestRun {
	out := &testv1.TestRun{
		Id:            r.ID,
		RunId:         r.RunID,
		Repository:    r.Repository.Name,
		Commit:        r.Commit,
		Status:        statusToProto(r.Status),
		Counts:        countsToProto(r.Counts),
		FailureReason: r.FailureReason,
		CreateTime:    prototime.Timestamp(r.CreatedAt),
	}
	out.EndTime = prototime.Timestamp(r.EndedAt)
	for _, s := range suites {
		out.Suites = append(out.Suites, &testv1.Suite{Name: s.Name, Counts: countsToProto(s.Counts), Duration: prototime.Duration(s.Duration)})
	}
	return out
}

func countsToProto(c domain.Counts) *testv1.Counts {
	return &testv1.Counts{Passed: int32(c.Passed), Failed: int32(c.Failed), Skipped: int32(c.Skipped)}
}

func statusToProto(s domain.Status) testv1.TestRunStatus {
	switch s {
	case domain.StatusRunning:
		return testv1.TestRunStatus_TEST_RUN_STATUS_RUNNING
	case domain.StatusPassed:
		return testv1.TestRunStatus_TEST_RUN_STATUS_PASSED
	case domain.StatusFailed:
		return testv1.TestRunStatus_TEST_RUN_STATUS_FAILED
	case domain.StatusError:
		return testv1.TestRunStatus_TEST_RUN_STATUS_ERROR
	}
	return testv1.TestRunStatus_TEST_RUN_STATUS_UNSPECIFIED
}

func caseStatusToProto(s domain.CaseStatus) testv1.CaseStatus {
	switch s {
	case domain.CasePassed:
		return testv1.CaseStatus_CASE_STATUS_PASSED
	case domain.CaseFailed:
		return testv1.CaseStatus_CASE_STATUS_FAILED
	case domain.CaseSkipped:
		return testv1.CaseStatus_CASE_STATUS_SKIPPED
	}
	return testv1.CaseStatus_CASE_STATUS_UNSPECIFIED
}

// caseStatusFromProto maps a filter; unspecified is 0, meaning all.
func caseStatusFromProto(s testv1.CaseStatus) domain.CaseStatus {
	switch s {
	case testv1.CaseStatus_CASE_STATUS_PASSED:
		return domain.CasePassed
	case testv1.CaseStatus_CASE_STATUS_FAILED:
		return domain.CaseFailed
	case testv1.CaseStatus_CASE_STATUS_SKIPPED:
		return domain.CaseSkipped
	}
	return 0
}
