package tests_test

import (
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
)

// A token limited to repositories reads the test runs, cases and logs of
// those repositories only: GetTestRun, ListTestCases and GetLogs of
// another repository's run answer permission_denied, by run id and by
// test run id. A token limited to the run's repository, and an admin
// token, read them. (TestService has no TailLogs.)
func TestRepositoryLimitedTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "quick", Run: "echo quick"}}}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED)) // of repository "hello"
	testRunID := h.events.finished(t, runID).GetTestRunId()

	own := h.clientWith(servicekittest.IssueToken(t, h.nats.URL, authv1.Role_ROLE_VIEWER, "hello"))
	other := h.clientWith(servicekittest.IssueToken(t, h.nats.URL, authv1.Role_ROLE_VIEWER, "other", "more"))
	ctx := t.Context()
	for _, c := range []testv1connect.TestServiceClient{own, other} {
		servicekittest.WaitKnown(t, func() error {
			_, err := c.GetTestRun(ctx, &testv1.GetTestRunRequest{RunId: runID})
			return err
		})
	}

	// Each procedure, by each name of the test run.
	calls := map[string]func(testv1connect.TestServiceClient) (int, error){
		"GetTestRun(run_id)": func(c testv1connect.TestServiceClient) (int, error) {
			res, err := c.GetTestRun(ctx, &testv1.GetTestRunRequest{RunId: runID})
			return len(res.GetTestRun().GetSteps()), err
		},
		"GetTestRun(id)": func(c testv1connect.TestServiceClient) (int, error) {
			res, err := c.GetTestRun(ctx, &testv1.GetTestRunRequest{Id: testRunID})
			return len(res.GetTestRun().GetSteps()), err
		},
		"ListTestCases(run_id)": func(c testv1connect.TestServiceClient) (int, error) {
			_, err := c.ListTestCases(ctx, &testv1.ListTestCasesRequest{RunId: runID})
			return 1, err // the run reports no cases: an answer is what counts
		},
		"ListTestCases(id)": func(c testv1connect.TestServiceClient) (int, error) {
			_, err := c.ListTestCases(ctx, &testv1.ListTestCasesRequest{Id: testRunID})
			return 1, err
		},
		"GetLogs(run id)": func(c testv1connect.TestServiceClient) (int, error) {
			res, err := c.GetLogs(ctx, &testv1.GetLogsRequest{RunId: runID})
			return len(res.GetLines()), err
		},
		"GetLogs(test run id)": func(c testv1connect.TestServiceClient) (int, error) {
			res, err := c.GetLogs(ctx, &testv1.GetLogsRequest{RunId: testRunID})
			return len(res.GetLines()), err
		},
	}
	for name, call := range calls {
		for who, c := range map[string]testv1connect.TestServiceClient{"token of hello": own, "admin": h.client} {
			if n, err := call(c); err != nil || n == 0 {
				t.Errorf("%s: %s = %d items, %v; want the test run's", who, name, n, err)
			}
		}
		if n, err := call(other); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("token of other repositories: %s = %d items, %v; want permission_denied", name, n, err)
		}
	}
}
