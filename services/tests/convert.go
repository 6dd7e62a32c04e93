package tests

import (
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/prototime"
	"github.com/sluicehq/sluice/platform/stepgraph"
	"github.com/sluicehq/sluice/platform/steplog"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/services/tests/domain"
)

// testRunFromEvent is the test run a successful build asks for (without
// its id and steps), from its BuildFinished (validated on receipt).
func testRunFromEvent(bf *buildeventsv1.BuildFinished) domain.TestRun {
	return domain.TestRun{
		RunID:   bf.GetRunId(),
		BuildID: bf.GetBuildId(),
		Repository: domain.Repository{
			ID:   bf.GetRepository().GetId(),
			Name: bf.GetRepository().GetName(),
			URL:  bf.GetRepository().GetUrl(),

			GitCredential: gitauth.KindFromProto(bf.GetRepository().GetGitCredential()),
			DefaultBranch: bf.GetRepository().GetDefaultBranch(),
		},
		Commit: bf.GetCommit(),
		Branch: bf.GetBranch(),
	}
}

// stepNames are the names (stepgraph.StepLabel) of the test steps of the build's pipeline.
func stepNames(bf *buildeventsv1.BuildFinished) []string {
	var names []string
	for _, st := range bf.GetPipeline().GetTest().GetSteps() {
		names = append(names, stepgraph.StepLabel(st))
	}
	return names
}

func repositoryRef(r domain.Repository) *sourceeventsv1.RepositoryRef {
	return &sourceeventsv1.RepositoryRef{Id: r.ID, Name: r.Name, Url: r.URL, GitCredential: r.GitCredential.Proto(), DefaultBranch: r.DefaultBranch}
}

func testRunToProto(r domain.TestRun) *testv1.TestRun {
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
	for _, st := range r.Steps {
		out.Steps = append(out.Steps, &testv1.Step{
			Name:     st.Name,
			Status:   stepStatusToProto(st.Status),
			ExitCode: int32(st.ExitCode),
			Duration: prototime.Duration(st.Duration),
			Tries:    int32(st.Tries),
			Reason:   st.Reason,
		})
	}
	for _, s := range r.Suites {
		out.Suites = append(out.Suites, &testv1.Suite{Name: s.Name, Counts: countsToProto(s.Counts), Duration: prototime.Duration(s.Duration)})
	}
	return out
}

func caseToProto(c domain.Case) *testv1.TestCase {
	return &testv1.TestCase{
		Suite:    c.Suite,
		Name:     c.Name,
		Status:   caseStatusToProto(c.Status),
		Duration: prototime.Duration(c.Duration),
		Output:   c.Output,
	}
}

func linesToProto(lines []steplog.Line) []*testv1.LogLine {
	out := make([]*testv1.LogLine, len(lines))
	for i, l := range lines {
		out[i] = &testv1.LogLine{Seq: l.Seq, Step: l.Step, Text: l.Text, Time: prototime.Timestamp(l.Time), Stream: l.Stream}
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
	case domain.StatusCancelled:
		return testv1.TestRunStatus_TEST_RUN_STATUS_CANCELLED
	}
	return testv1.TestRunStatus_TEST_RUN_STATUS_UNSPECIFIED
}

func stepStatusToProto(s domain.StepStatus) testv1.StepStatus {
	switch s {
	case domain.StepPending:
		return testv1.StepStatus_STEP_STATUS_PENDING
	case domain.StepSucceeded:
		return testv1.StepStatus_STEP_STATUS_SUCCEEDED
	case domain.StepFailed:
		return testv1.StepStatus_STEP_STATUS_FAILED
	case domain.StepTimedOut:
		return testv1.StepStatus_STEP_STATUS_TIMED_OUT
	case domain.StepSkipped:
		return testv1.StepStatus_STEP_STATUS_SKIPPED
	case domain.StepCancelled:
		return testv1.StepStatus_STEP_STATUS_CANCELLED
	}
	return testv1.StepStatus_STEP_STATUS_UNSPECIFIED
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
