package tests_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/paging"
	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/services/tests"
	"github.com/sluicehq/sluice/services/tests/report"
)

// helloPipeline builds the artifact bin/hello and tests with go test -json;
// breakEnv, when set, makes three of the module's tests fail.
func helloPipeline(breakEnv string) *sourcev1.Pipeline {
	return &sourcev1.Pipeline{
		Build: &sourcev1.BuildSpec{
			Steps:     []*sourcev1.Step{{Name: "compile", Run: "go build ./..."}},
			Artifacts: []*sourcev1.ArtifactSpec{{Name: "hello", Path: "bin/hello"}},
		},
		Test: &sourcev1.TestSpec{
			Steps: []*sourcev1.Step{
				{
					Name: "artifact",
					Run:  `test -x bin/hello && ./bin/hello && echo "run=$SLUICE_RUN_ID step=$SLUICE_STEP branch=$SLUICE_BRANCH repo=$SLUICE_REPOSITORY commit=$SLUICE_COMMIT greeting=$GREETING"`,
					Env:  map[string]string{"GREETING": "hi"},
				},
				{
					Name:    "unit",
					Run:     "mkdir -p reports; go test -json ./... > reports/go-test.json; rc=$?; echo \"go test exited with $rc\"; exit $rc",
					Env:     map[string]string{"HELLO_BREAK": breakEnv},
					Timeout: durationpb.New(2 * time.Minute),
				},
			},
			Reports: []*sourcev1.ReportSpec{{Path: "reports/*.json", Format: sourcev1.ReportFormat_REPORT_FORMAT_GO_TEST_JSON}},
		},
	}
}

func TestPassingTests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	client := h.client
	ctx := context.Background()

	runID := h.run(helloPipeline(""))
	art := h.putArtifact(runID, "hello", helloArtifact)
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED, art))

	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
		t.Fatalf("status = %s (%s), want PASSED", f.GetStatus(), f.GetFailureReason())
	}
	if c := f.GetCounts(); c.GetPassed() != 5 || c.GetFailed() != 0 || c.GetSkipped() != 1 {
		t.Errorf("counts = %v, want 5 passed, 0 failed, 1 skipped", c)
	}
	if f.GetBuildId() != "build-"+runID || f.GetBranch() != "main" || f.GetCommit() != h.repo.commit || f.GetFailureReason() != "" ||
		len(f.GetFailedCases()) != 0 || f.GetFailedStep() != "" {
		t.Errorf("TestRunFinished = %v", f)
	}
	if f.GetDuration().AsDuration() <= 0 || f.GetStepDuration().AsDuration() <= 0 || f.GetStepDuration().AsDuration() > f.GetDuration().AsDuration() {
		t.Errorf("duration %v, step duration %v", f.GetDuration().AsDuration(), f.GetStepDuration().AsDuration())
	}
	env := events.CIEnvironment(f.GetRepository().GetName())
	if f.GetEnvironment() != env || f.GetCaseEvents() != 6 || f.GetCaseEventsOmitted() != 0 {
		t.Errorf("TestRunFinished in %q with %d case events, %d omitted; want %q, 6, 0", f.GetEnvironment(), f.GetCaseEvents(), f.GetCaseEventsOmitted(), env)
	}
	evs := h.events.of(runID)
	if len(evs) != 8 {
		t.Fatalf("%d events for the run, want TestRunStarted, 6 test case events and TestRunFinished: %v", len(evs), evs)
	}
	started, ok := evs[0].Payload.(*testeventsv1.TestRunStarted)
	if !ok || started.GetTestRunId() != f.GetTestRunId() || started.GetCommit() != h.repo.commit || evs[0].SubjectID != f.GetTestRunId() ||
		started.GetEnvironment() != env {
		t.Errorf("first event = %v, want TestRunStarted of test run %s in %s", evs[0].Payload, f.GetTestRunId(), env)
	}
	// The case events come before TestRunFinished, the skipped case first.
	if sk, ok := evs[1].Payload.(*testeventsv1.TestCaseSkipped); !ok || sk.GetTestRunId() != f.GetTestRunId() ||
		sk.GetTestCase().GetName() != "TestLater" || sk.GetPosition() != 2 || evs[1].SubjectID != events.TestCaseRunID(f.GetTestRunId(), int(sk.GetPosition())) {
		t.Errorf("second event = %v about %s, want the skipped case", evs[1].Payload, evs[1].SubjectID)
	}
	for _, ev := range evs[2:7] {
		if c, ok := ev.Payload.(*testeventsv1.TestCaseFinished); !ok || c.GetTestCase().GetStatus() != testv1.CaseStatus_CASE_STATUS_PASSED ||
			c.GetEnvironment() != env || c.GetTestCase().GetName() == "" || c.GetTestCase().GetOutput() != "" {
			t.Errorf("event %v, want a passed TestCaseFinished without output", ev.Payload)
		}
	}
	if _, ok := evs[7].Payload.(*testeventsv1.TestRunFinished); !ok {
		t.Errorf("last event = %v, want TestRunFinished", evs[7].Payload)
	}

	// The API answers by run_id, and by id: the run's or the test run's.
	for _, req := range []*testv1.GetTestRunRequest{{RunId: runID}, {Id: runID}, {Id: f.GetTestRunId()}} {
		res, err := client.GetTestRun(ctx, req)
		if err != nil {
			t.Fatalf("GetTestRun(%v): %v", req, err)
		}
		tr := res.GetTestRun()
		if tr.GetId() != f.GetTestRunId() || tr.GetRunId() != runID || tr.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED ||
			tr.GetRepository() != "hello" || tr.GetCommit() != h.repo.commit || tr.GetEndTime() == nil || tr.GetCounts().GetPassed() != 5 {
			t.Errorf("GetTestRun(%v) = %v", req, tr)
		}
		if len(tr.GetSuites()) != 1 || tr.GetSuites()[0].GetName() != "example.com/hello" ||
			tr.GetSuites()[0].GetCounts().GetPassed() != 5 || tr.GetSuites()[0].GetCounts().GetSkipped() != 1 {
			t.Errorf("suites = %v", tr.GetSuites())
		}
		if got := steps(tr); got != "artifact:SUCCEEDED:0 unit:SUCCEEDED:0" {
			t.Errorf("steps = %s, want artifact and unit SUCCEEDED", got)
		}
		for _, st := range tr.GetSteps() {
			if st.GetDuration().AsDuration() <= 0 {
				t.Errorf("step %s took %v", st.GetName(), st.GetDuration().AsDuration())
			}
		}
	}
	want := "TestGreeting:PASSED TestWorld:PASSED TestLater:SKIPPED TestTable:PASSED TestTable/a:PASSED TestTable/b:PASSED"
	for _, req := range []*testv1.ListTestCasesRequest{{Id: runID}, {RunId: runID}, {Id: f.GetTestRunId()}} {
		cases, err := client.ListTestCases(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if got := caseNames(cases.GetCases()); got != want || cases.GetNextPageToken() != "" {
			t.Errorf("ListTestCases(%v) = %s (next page %q)\nwant    %s", req, got, cases.GetNextPageToken(), want)
		}
	}
	// Pages of 4: each case once, in report order.
	var paged []*testv1.TestCase
	token := ""
	for pages := 0; ; pages++ {
		if pages == 2 {
			t.Fatalf("a third page after %s; want 6 cases in 2 pages", caseNames(paged))
		}
		res, err := client.ListTestCases(ctx, &testv1.ListTestCasesRequest{RunId: runID, PageSize: 4, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, res.GetCases()...)
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	if got := caseNames(paged); got != want {
		t.Errorf("cases in pages of 4 = %s\nwant                 %s", got, want)
	}
	passed, err := client.ListTestCases(ctx, &testv1.ListTestCasesRequest{RunId: runID, Status: testv1.CaseStatus_CASE_STATUS_PASSED, PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := caseNames(passed.GetCases()); got != "TestGreeting:PASSED TestWorld:PASSED TestTable:PASSED" || passed.GetNextPageToken() == "" {
		t.Errorf("first page of 3 passed cases = %s (next %q)", got, passed.GetNextPageToken())
	}
	rest, err := client.ListTestCases(ctx, &testv1.ListTestCasesRequest{RunId: runID, Status: testv1.CaseStatus_CASE_STATUS_PASSED, PageSize: 3, PageToken: passed.GetNextPageToken()})
	if err != nil {
		t.Fatal(err)
	}
	if got := caseNames(rest.GetCases()); got != "TestTable/a:PASSED TestTable/b:PASSED" || rest.GetNextPageToken() != "" {
		t.Errorf("second page of passed cases = %s (next %q)", got, rest.GetNextPageToken())
	}
	for _, req := range []*testv1.ListTestCasesRequest{
		{RunId: runID, PageToken: "not-a-token"},
		{RunId: runID, PageToken: paging.Encode(paging.Cursor{Time: 1, ID: "another-test-run"})},
		{RunId: runID, PageSize: 1001},
		{},
		{Id: runID, RunId: runID},
	} {
		_, err := client.ListTestCases(ctx, req)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("ListTestCases(%v): %v, want InvalidArgument", req, err)
		}
	}
	skipped, err := client.ListTestCases(ctx, &testv1.ListTestCasesRequest{Id: runID, Status: testv1.CaseStatus_CASE_STATUS_SKIPPED})
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped.GetCases()) != 1 || skipped.GetCases()[0].GetName() != "TestLater" {
		t.Errorf("skipped cases = %v", skipped.GetCases())
	}

	// The artifact was in the workspace, executable, and the steps got
	// their environment; the log is complete.
	logs, err := client.GetLogs(ctx, &testv1.GetLogsRequest{RunId: runID, Step: "artifact"})
	if err != nil {
		t.Fatal(err)
	}
	var text []string
	for _, l := range logs.GetLines() {
		text = append(text, l.GetStream()+" "+l.GetText())
	}
	joined := strings.Join(text, "\n")
	for _, line := range []string{
		`meta --- step artifact: test -x bin/hello`,
		"stdout hello from the artifact",
		"stdout run=" + runID + " step=artifact branch=main repo=hello commit=" + h.repo.commit + " greeting=hi",
		"meta --- step artifact exited with code 0 after ",
	} {
		if !strings.Contains(joined, line) {
			t.Errorf("artifact step log lacks %q:\n%s", line, joined)
		}
	}
	all, err := client.GetLogs(ctx, &testv1.GetLogsRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	if !all.GetComplete() || len(all.GetLines()) <= len(logs.GetLines()) {
		t.Errorf("whole log: complete=%v, %d lines", all.GetComplete(), len(all.GetLines()))
	}
	if last := all.GetLines()[len(all.GetLines())-1].GetText(); last != "--- test run PASSED" {
		t.Errorf("last log line = %q", last)
	}

	_, err = client.GetTestRun(ctx, &testv1.GetTestRunRequest{Id: "no-such-run"})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no test run with id or run id no-such-run") {
		t.Errorf("GetTestRun of an unknown id: %v, want NotFound", err)
	}
	_, err = client.GetTestRun(ctx, &testv1.GetTestRunRequest{RunId: f.GetTestRunId()})
	if connect.CodeOf(err) != connect.CodeNotFound || !strings.Contains(err.Error(), "no test run for run "+f.GetTestRunId()) {
		t.Errorf("GetTestRun(run_id: a test run id): %v, want NotFound: run_id names a run only", err)
	}
	for _, req := range []*testv1.GetTestRunRequest{{}, {Id: runID, RunId: runID}} {
		_, err = client.GetTestRun(ctx, req)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("GetTestRun(%v): %v, want InvalidArgument: exactly one of id and run_id", req, err)
		}
	}
}

// steps says a test run's steps as name:STATUS:exit code.
func steps(tr *testv1.TestRun) string {
	var out []string
	for _, st := range tr.GetSteps() {
		out = append(out, fmt.Sprintf("%s:%s:%d", st.GetName(), strings.TrimPrefix(st.GetStatus().String(), "STEP_STATUS_"), st.GetExitCode()))
	}
	return strings.Join(out, " ")
}

// caseNames says cases as name:STATUS.
func caseNames(cases []*testv1.TestCase) string {
	var names []string
	for _, c := range cases {
		names = append(names, c.GetName()+":"+strings.TrimPrefix(c.GetStatus().String(), "CASE_STATUS_"))
	}
	return strings.Join(names, " ")
}

func TestFailingTests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	client := h.client
	ctx := context.Background()

	runID := h.run(helloPipeline("yes"))
	art := h.putArtifact(runID, "hello", helloArtifact)
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED, art))

	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_FAILED {
		t.Fatalf("status = %s (%s), want FAILED", f.GetStatus(), f.GetFailureReason())
	}
	if c := f.GetCounts(); c.GetPassed() != 2 || c.GetFailed() != 3 || c.GetSkipped() != 1 {
		t.Errorf("counts = %v, want 2 passed, 3 failed, 1 skipped", c)
	}
	if got, want := strings.Join(f.GetFailedCases(), ","), "TestWorld,TestTable,TestTable/b"; got != want {
		t.Errorf("failed cases = %s, want %s", got, want)
	}
	if got, want := f.GetFailureReason(), `3 tests failed: TestWorld, TestTable, TestTable/b; step "unit" exited with code 1`; got != want {
		t.Errorf("failure reason = %q, want %q", got, want)
	}
	if f.GetFailedStep() != "unit" || f.GetExitCode() != 1 {
		t.Errorf("failed step %q exit code %d, want unit 1", f.GetFailedStep(), f.GetExitCode())
	}
	if lines := f.GetLastLogLines(); len(lines) == 0 || lines[len(lines)-1] != "go test exited with 1" {
		t.Errorf("last log lines = %q", lines)
	}
	// The case events: the failed cases first, in report order.
	var published []string
	for _, ev := range h.events.of(runID) {
		switch c := ev.Payload.(type) {
		case *testeventsv1.TestCaseFinished:
			published = append(published, c.GetTestCase().GetName()+":"+strings.TrimPrefix(c.GetTestCase().GetStatus().String(), "CASE_STATUS_"))
		case *testeventsv1.TestCaseSkipped:
			published = append(published, c.GetTestCase().GetName()+":skipped")
		}
	}
	if got, want := strings.Join(published, " "), "TestWorld:FAILED TestTable:FAILED TestTable/b:FAILED TestLater:skipped TestGreeting:PASSED TestTable/a:PASSED"; got != want {
		t.Errorf("case events %s\nwant        %s", got, want)
	}

	failed, err := client.ListTestCases(ctx, &testv1.ListTestCasesRequest{Id: f.GetTestRunId(), Status: testv1.CaseStatus_CASE_STATUS_FAILED})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed.GetCases()) != 3 {
		t.Fatalf("failed cases = %v", failed.GetCases())
	}
	if c := failed.GetCases()[0]; c.GetName() != "TestWorld" || c.GetSuite() != "example.com/hello" ||
		!strings.Contains(c.GetOutput(), "broken on purpose: HELLO_BREAK=yes") {
		t.Errorf("first failed case = %v", c)
	}
	res, err := client.GetTestRun(ctx, &testv1.GetTestRunRequest{Id: runID})
	if err != nil {
		t.Fatal(err)
	}
	if tr := res.GetTestRun(); tr.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_FAILED || tr.GetFailureReason() != f.GetFailureReason() ||
		tr.GetCounts().GetFailed() != 3 || steps(tr) != "artifact:SUCCEEDED:0 unit:FAILED:1" {
		t.Errorf("GetTestRun = %v", tr)
	}
}

const junitReport = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="api" time="1.5">
    <testcase name="lists users" classname="api" time="0.5"/>
    <testcase name="creates users" classname="api" time="1.0">
      <failure message="expected 201, got 500">POST /users</failure>
    </testcase>
  </testsuite>
  <testsuite name="ui">
    <testcase name="renders" classname="ui" time="0.25"/>
    <testcase name="animates" classname="ui"><skipped/></testcase>
  </testsuite>
</testsuites>`

func TestJUnitReport(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	client := h.client
	ctx := context.Background()

	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Steps:   []*sourcev1.Step{{Name: "e2e", Run: "mkdir -p out && cat > out/junit.xml <<'EOF'\n" + junitReport + "\nEOF"}},
		Reports: []*sourcev1.ReportSpec{{Path: "out/junit.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
	}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))

	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_FAILED || f.GetFailureReason() != "1 test failed: creates users" {
		t.Fatalf("status = %s (%s), want FAILED: 1 test failed: creates users", f.GetStatus(), f.GetFailureReason())
	}
	if c := f.GetCounts(); c.GetPassed() != 2 || c.GetFailed() != 1 || c.GetSkipped() != 1 {
		t.Errorf("counts = %v, want 2 passed, 1 failed, 1 skipped", c)
	}
	if f.GetFailedStep() != "" {
		t.Errorf("failed step = %q; the step passed", f.GetFailedStep())
	}
	res, err := client.GetTestRun(ctx, &testv1.GetTestRunRequest{Id: runID})
	if err != nil {
		t.Fatal(err)
	}
	suites := res.GetTestRun().GetSuites()
	if len(suites) != 2 || suites[0].GetName() != "api" || suites[0].GetDuration().AsDuration() != 1500*time.Millisecond ||
		suites[0].GetCounts().GetFailed() != 1 || suites[1].GetName() != "ui" || suites[1].GetCounts().GetSkipped() != 1 ||
		suites[1].GetDuration().AsDuration() != 250*time.Millisecond {
		t.Errorf("suites = %v", suites)
	}
	failed, err := client.ListTestCases(ctx, &testv1.ListTestCasesRequest{Id: runID, Status: testv1.CaseStatus_CASE_STATUS_FAILED})
	if err != nil {
		t.Fatal(err)
	}
	if len(failed.GetCases()) != 1 || failed.GetCases()[0].GetOutput() != "expected 201, got 500\nPOST /users" ||
		failed.GetCases()[0].GetDuration().AsDuration() != time.Second {
		t.Errorf("failed cases = %v", failed.GetCases())
	}
}

func TestFailedBuildStartsNoTests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	client := h.client

	runID := h.run(helloPipeline(""))
	seq := h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_FAILED))
	h.waitHandled(seq)

	_, err := client.GetTestRun(context.Background(), &testv1.GetTestRunRequest{Id: runID})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetTestRun after a failed build: %v, want NotFound", err)
	}
	if n := h.testStreamMsgs(); n != 0 {
		t.Errorf("TEST stream has %d events after a failed build, want none", n)
	}
}

func TestDuplicateBuildFinished(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	client := h.client

	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "quick", Run: "sleep 0.2"}}}})
	bf := h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED)
	// Two events (different ids, so JetStream does not drop the second):
	// build published its result twice.
	h.publish(bf)
	seq := h.publish(bf)
	h.events.finished(t, runID)
	h.waitHandled(seq)

	// Every event the service published has reached the TEST stream.
	ctx := context.Background()
	if n := h.testStreamMsgs(); n != 2 {
		t.Errorf("TEST stream holds %d events, want one TestRunStarted and one TestRunFinished", n)
	}
	var started, finished int
	for _, ev := range h.events.of(runID) {
		switch ev.Payload.(type) {
		case *testeventsv1.TestRunStarted:
			started++
		case *testeventsv1.TestRunFinished:
			finished++
		}
	}
	if started != 1 || finished != 1 {
		t.Errorf("%d TestRunStarted and %d TestRunFinished, want one each", started, finished)
	}
	logs, err := client.GetLogs(ctx, &testv1.GetLogsRequest{RunId: runID, Step: "quick"})
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	for _, l := range logs.GetLines() {
		if strings.HasPrefix(l.GetText(), "--- step quick:") {
			runs++
		}
	}
	if runs != 1 {
		t.Errorf("the step ran %d times, want once", runs)
	}
}

func TestNoTestSection(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	runID := h.run(&sourcev1.Pipeline{Build: &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "true"}}}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))

	f := h.events.finished(t, runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED || f.GetCounts().GetPassed() != 0 ||
		f.GetCounts().GetFailed() != 0 || f.GetCounts().GetSkipped() != 0 {
		t.Errorf("TestRunFinished = %v, want PASSED with zero counts", f)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	missingReport := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Steps:   []*sourcev1.Step{{Name: "unit", Run: "echo no report written"}},
		Reports: []*sourcev1.ReportSpec{{Path: "reports/missing.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
	}})
	brokenReport := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Steps:   []*sourcev1.Step{{Name: "unit", Run: "printf '<testsuite name=\"s\">\\n<testcase name=\"a\">\\n</testsuite>\\n' > junit.xml"}},
		Reports: []*sourcev1.ReportSpec{{Path: "junit.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
	}})
	badChecksum := h.run(helloPipeline(""))
	corrupt := h.putArtifact(badChecksum, "hello", helloArtifact)
	realSum := corrupt.GetSha256()
	corrupt.Sha256 = strings.Repeat("0", 64)
	// An event from a build service that predates pipelines in BuildFinished.
	noPipeline := "run-without-pipeline"

	h.publish(h.buildFinished(missingReport, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	h.publish(h.buildFinished(brokenReport, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	h.publish(h.buildFinished(badChecksum, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED, corrupt))
	h.publish(h.buildFinished(noPipeline, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))

	for _, tt := range []struct {
		name, runID, reason string
	}{
		{"missing report", missingReport, `report file "reports/missing.xml" not found`},
		{"malformed report", brokenReport, `report file "junit.xml": line 3: XML syntax error: element <testcase> closed by </testsuite>`},
		{"artifact checksum", badChecksum, `artifact "hello": content does not match the build's record: sha256 is ` + realSum + `, the build recorded ` + strings.Repeat("0", 64)},
		{"no pipeline", noPipeline, "the BuildFinished event carries no pipeline (a build service older than this test service published it); trigger the run again"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := h.events.finished(t, tt.runID)
			if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_ERROR || f.GetFailureReason() != tt.reason {
				t.Errorf("TestRunFinished %s %q, want ERROR %q", f.GetStatus(), f.GetFailureReason(), tt.reason)
			}
		})
	}
}

// TestHostileReports: a report that is a named pipe (whose opening would
// wait for a writer for good), one over the operator's size limit and one
// nested deeper than report.MaxJUnitDepth are problems of the test run,
// each naming the file and the limit, and the worker goes on. A glob of
// many broken reports and a case named with 800 KB fail the run with a
// reason its TestRunFinished can carry.
func TestHostileReports(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *tests.Config) { c.MaxReportSize, c.MaxReportFiles = 1<<20, 40 })
	junit := func(path, run string) string {
		return h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
			Steps:   []*sourcev1.Step{{Name: "unit", Run: run}},
			Reports: []*sourcev1.ReportSpec{{Path: path, Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
		}})
	}
	fifo := junit("reports/*.xml", "mkdir reports && mkfifo reports/unit.xml")
	large := junit("large.xml", `{ printf '<testsuite name="s">'; for i in $(seq 50000); do printf '<testcase name="case%d"/>' $i; done; printf '</testsuite>'; } > large.xml`)
	deep := junit("deep.xml", `{ printf '<testsuites>'; for i in $(seq 100); do printf '<testsuite name="s">'; done; printf '<testcase name="c"/>'; for i in $(seq 100); do printf '</testsuite>'; done; printf '</testsuites>'; } > deep.xml`)
	fifos := junit("many/*.xml", `mkdir many && for i in $(seq 30); do mkfifo many/$i.xml; done`)
	longName := junit("long.xml", `{ printf '<testsuite name="s"><testcase name="'; head -c 800000 /dev/zero | tr '\0' x; printf '"><failure/></testcase></testsuite>'; } > long.xml`)
	tooMany := junit("counted/*.xml", `mkdir counted && for i in $(seq 50); do echo "<testsuite name=\"s\"><testcase name=\"c$i\"/></testsuite>" > counted/$i.xml; done`)
	for _, id := range []string{fifo, large, deep, fifos, longName, tooMany} {
		h.publish(h.buildFinished(id, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	}
	var manyFifos []string
	for _, i := range []int{1, 10, 11, 12, 13, 14, 15, 16, 17, 18} { // in the glob's order
		manyFifos = append(manyFifos, fmt.Sprintf(`report file "many/%d.xml": it is a named pipe (FIFO), not a regular file`, i))
	}
	for _, tt := range []struct {
		name, runID, reason string
		status              testv1.TestRunStatus
	}{
		{"named pipe", fifo, `report file "reports/unit.xml": it is a named pipe (FIFO), not a regular file`, testv1.TestRunStatus_TEST_RUN_STATUS_ERROR},
		{"large", large, `report file "large.xml": the file is 1388926 bytes; at most 1048576 are read (hint: the test service's max-report-size setting sets the limit)`, testv1.TestRunStatus_TEST_RUN_STATUS_ERROR},
		{"deep", deep, `report file "deep.xml": line 1: elements nest more than 100 deep; at most 100 levels are read`, testv1.TestRunStatus_TEST_RUN_STATUS_ERROR},
		{"many named pipes", fifos, strings.Join(manyFifos, "; ") + "; and 20 more report problems", testv1.TestRunStatus_TEST_RUN_STATUS_ERROR},
		{"too many files", tooMany, `report "counted/*.xml": 50 files match and 40 more may be read; at most 40 report files are read per test run (hint: the test service's max-report-files setting sets the limit)`, testv1.TestRunStatus_TEST_RUN_STATUS_ERROR},
		{"long name", longName, "1 test failed: " + strings.Repeat("x", report.MaxNameLength-3) + "…", testv1.TestRunStatus_TEST_RUN_STATUS_FAILED},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := h.events.finished(t, tt.runID)
			if f.GetStatus() != tt.status || f.GetFailureReason() != tt.reason {
				t.Errorf("TestRunFinished %s %.300q, want %s %.300q", f.GetStatus(), f.GetFailureReason(), tt.status, tt.reason)
			}
		})
	}
}

// A test run lists the pipeline's test steps: how those that ran ended,
// and the rest SKIPPED after a failure. (A step the worker stopped is
// CANCELLED: TestInfrastructureFailure.)
func TestStepsOfATestRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	runID := h.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{
		{Name: "first", Run: "true"},
		{Name: "second", Run: "exit 3"},
		{Name: "third", Run: "true"},
	}}})
	h.publish(h.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	if f := h.events.finished(t, runID); f.GetFailedStep() != "second" || f.GetExitCode() != 3 {
		t.Fatalf("TestRunFinished = %v, want second failed with 3", f)
	}
	res, err := h.client.GetTestRun(t.Context(), &testv1.GetTestRunRequest{RunId: runID})
	if err != nil {
		t.Fatal(err)
	}
	if got := steps(res.GetTestRun()); got != "first:SUCCEEDED:0 second:FAILED:3 third:SKIPPED:0" {
		t.Errorf("steps = %s, want first SUCCEEDED, second FAILED (3), third SKIPPED", got)
	}
}

// A BuildFinished its proto's rules refuse (a run id that cannot name a
// workspace, a commit that is not a full SHA-1) is dead-lettered on its
// first delivery: no test run, no event. The rules are checked when the
// event is decoded; the service does not check again.
func TestInvalidBuildFinishedIsDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	pipeline := &sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "quick", Run: "true"}}}}
	t.Run("events", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			edit func(*buildeventsv1.BuildFinished)
			// want is what the reason names.
			want string
		}{
			{"run id leaving the workspaces", func(bf *buildeventsv1.BuildFinished) { bf.RunId = "../../etc" }, "run_id"},
			{"run id too long", func(bf *buildeventsv1.BuildFinished) { bf.RunId = strings.Repeat("a", 65) }, "run_id"},
			{"short commit", func(bf *buildeventsv1.BuildFinished) { bf.Commit = "abc123" }, "commit"},
			{"commit that is an option", func(bf *buildeventsv1.BuildFinished) { bf.Commit = "--upload-pack=touch /tmp/x" }, "commit"},
			{"artifact without an object", func(bf *buildeventsv1.BuildFinished) {
				bf.Artifacts = []*buildv1.Artifact{{Name: "hello", Sha256: strings.Repeat("a", 64), Size: 1}}
			}, "artifacts[0].object"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				bf := h.buildFinished(h.run(pipeline), buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED)
				tc.edit(bf)
				reason := h.deadLetter(t, h.publishUnchecked(t, bf))
				if !strings.Contains(reason, events.ErrInvalidEvent.Error()) || !strings.Contains(reason, tc.want) {
					t.Errorf("dead-lettered because %q; want an invalid event naming %q", reason, tc.want)
				}
				if len(bf.GetRunId()) > 64 {
					return // GetTestRun refuses it; the TEST stream says no test run started
				}
				if _, err := h.client.GetTestRun(t.Context(), &testv1.GetTestRunRequest{Id: bf.GetRunId()}); connect.CodeOf(err) != connect.CodeNotFound {
					t.Errorf("GetTestRun(%s): %v, want NotFound", bf.GetRunId(), err)
				}
			})
		}
	})
	// A test run is recorded with its TestRunStarted, in one transaction.
	if n := h.testStreamMsgs(); n != 0 {
		t.Errorf("TEST stream has %d events, want none (no test run)", n)
	}
}
