package tests_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/executor/container/containertest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/services/tests"
)

// A test step in a container reaches the stage's service (a database
// stand-in) by its name, and its report, written in the workspace, is
// read as any step's.
func TestTestStepsRunInContainersBesideServices(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	h := newHarness(t, func(c *tests.Config) { c.Containers = containertest.Config() })
	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Services: []*sourcev1.ServiceSpec{{Name: "db", Image: img, Env: map[string]string{"ANSWER": "ready"},
			Command: []string{"sh", "-c", "mkdir -p /tmp/www && echo $ANSWER > /tmp/www/index.html && exec httpd -f -p 5432 -h /tmp/www"}}},
		Steps: []*sourcev1.Step{{Name: "it", Image: img, Run: `mkdir -p out
state=$(for i in $(seq 50); do wget -q -O - http://db:5432/ && break; sleep 0.1; done)
cat > out/junit.xml <<EOF
<testsuite name="db" tests="1"><testcase name="db is $state"/></testsuite>
EOF`}},
		Reports: []*sourcev1.ReportSpec{{Path: "out/junit.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
	}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED || f.GetCounts().GetPassed() != 1 {
		t.Fatalf("status %s (%s), counts %v", f.GetStatus(), f.GetFailureReason(), f.GetCounts())
	}
	cases, err := h.client.ListTestCases(t.Context(), &testv1.ListTestCasesRequest{Id: runID})
	if err != nil {
		t.Fatal(err)
	}
	if len(cases.GetCases()) != 1 || cases.GetCases()[0].GetName() != "db is ready" {
		t.Fatalf("cases %v", cases.GetCases())
	}
}

// Without a container engine, a test run whose step names an image ends
// in ERROR at once, naming the step and why.
func TestTestStepWithoutEngineErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *tests.Config) {
		c.Containers = containertest.Config()
		c.Containers.Engine = container.EngineNone
	})
	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "unit", Image: "golang:1.25", Run: "go test ./..."}}}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_ERROR || !strings.Contains(f.GetFailureReason(), `step "unit" runs in image golang:1.25`) {
		t.Fatalf("status %s, reason %q", f.GetStatus(), f.GetFailureReason())
	}
}
