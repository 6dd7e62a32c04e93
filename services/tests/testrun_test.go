package tests_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/test/v1/testv1connect"
	"github.com/sluicehq/sluice/services/tests"
)

// startService composes the test service as the binaries do, with its
// Connect API on a loopback port, and returns a client of it.
func (w *world) startService(cfg tests.Config) testv1connect.TestServiceClient {
	w.t.Helper()
	p := servicekittest.Start(w.t, w.nats.URL, servicekittest.Options{Log: testLogger(w.t)}, tests.Module(cfg))
	return testv1connect.NewTestServiceClient(p.Client, p.URL)
}

func (w *world) config() tests.Config {
	return tests.Config{Settings: servicekit.Settings{DataDir: w.t.TempDir(), DatabaseURL: sqldbtest.URL(w.t)}, Workers: 2}
}

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
	w := newWorld(t)
	client := w.startService(w.config())
	ctx := context.Background()

	runID := w.run(helloPipeline(""))
	art := w.putArtifact(runID, "hello", helloArtifact)
	w.publish(w.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED, art))

	f := w.events.finished(runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED {
		t.Fatalf("status = %s (%s), want PASSED", f.GetStatus(), f.GetFailureReason())
	}
	if c := f.GetCounts(); c.GetPassed() != 5 || c.GetFailed() != 0 || c.GetSkipped() != 1 {
		t.Errorf("counts = %v, want 5 passed, 0 failed, 1 skipped", c)
	}
	if f.GetBuildId() != "build-"+runID || f.GetBranch() != "main" || f.GetCommit() != w.repo.commit || f.GetFailureReason() != "" ||
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
	evs := w.events.of(runID)
	if len(evs) != 8 {
		t.Fatalf("%d events for the run, want TestRunStarted, 6 test case events and TestRunFinished: %v", len(evs), evs)
	}
	started, ok := evs[0].Payload.(*testeventsv1.TestRunStarted)
	if !ok || started.GetTestRunId() != f.GetTestRunId() || started.GetCommit() != w.repo.commit || evs[0].SubjectID != f.GetTestRunId() ||
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

	// The API answers by run id and by test run id.
	for _, id := range []string{runID, f.GetTestRunId()} {
		res, err := client.GetTestRun(ctx, &testv1.GetTestRunRequest{Id: id})
		if err != nil {
			t.Fatalf("GetTestRun(%s): %v", id, err)
		}
		tr := res.GetTestRun()
		if tr.GetId() != f.GetTestRunId() || tr.GetRunId() != runID || tr.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED ||
			tr.GetRepository() != "hello" || tr.GetCommit() != w.repo.commit || tr.GetEndTime() == nil || tr.GetCounts().GetPassed() != 5 {
			t.Errorf("GetTestRun(%s) = %v", id, tr)
		}
		if len(tr.GetSuites()) != 1 || tr.GetSuites()[0].GetName() != "example.com/hello" ||
			tr.GetSuites()[0].GetCounts().GetPassed() != 5 || tr.GetSuites()[0].GetCounts().GetSkipped() != 1 {
			t.Errorf("suites = %v", tr.GetSuites())
		}
	}
	cases, err := client.ListTestCases(ctx, &testv1.ListTestCasesRequest{Id: runID})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cases.GetCases() {
		names = append(names, c.GetName()+":"+strings.TrimPrefix(c.GetStatus().String(), "CASE_STATUS_"))
	}
	want := "TestGreeting:PASSED TestWorld:PASSED TestLater:SKIPPED TestTable:PASSED TestTable/a:PASSED TestTable/b:PASSED"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("cases = %s\nwant    %s", got, want)
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
		"stdout run=" + runID + " step=artifact branch=main repo=hello commit=" + w.repo.commit + " greeting=hi",
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
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetTestRun of an unknown id: %v, want NotFound", err)
	}
	_, err = client.GetTestRun(ctx, &testv1.GetTestRunRequest{})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("GetTestRun without an id: %v, want InvalidArgument", err)
	}
}

func TestFailingTests(t *testing.T) {
	w := newWorld(t)
	client := w.startService(w.config())
	ctx := context.Background()

	runID := w.run(helloPipeline("yes"))
	art := w.putArtifact(runID, "hello", helloArtifact)
	w.publish(w.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED, art))

	f := w.events.finished(runID)
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
	for _, ev := range w.events.of(runID) {
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
		tr.GetCounts().GetFailed() != 3 {
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
	w := newWorld(t)
	client := w.startService(w.config())
	ctx := context.Background()

	runID := w.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Steps:   []*sourcev1.Step{{Name: "e2e", Run: "mkdir -p out && cat > out/junit.xml <<'EOF'\n" + junitReport + "\nEOF"}},
		Reports: []*sourcev1.ReportSpec{{Path: "out/junit.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
	}})
	w.publish(w.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))

	f := w.events.finished(runID)
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
	w := newWorld(t)
	client := w.startService(w.config())

	runID := w.run(helloPipeline(""))
	seq := w.publish(w.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_FAILED))
	w.waitHandled(seq)

	_, err := client.GetTestRun(context.Background(), &testv1.GetTestRunRequest{Id: runID})
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("GetTestRun after a failed build: %v, want NotFound", err)
	}
	stream, err := w.js.Stream(context.Background(), "TEST")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("TEST stream has %d events after a failed build, want none", info.State.Msgs)
	}
}

func TestDuplicateBuildFinished(t *testing.T) {
	w := newWorld(t)
	client := w.startService(w.config())

	runID := w.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{Steps: []*sourcev1.Step{{Name: "quick", Run: "sleep 0.2"}}}})
	bf := w.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED)
	// Two events (different ids, so JetStream does not drop the second):
	// build published its result twice.
	w.publish(bf)
	seq := w.publish(bf)
	w.events.finished(runID)
	w.waitHandled(seq)

	// Every event the service published has reached the TEST stream.
	ctx := context.Background()
	stream, err := w.js.Stream(ctx, "TEST")
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("TEST stream holds %d events, want one TestRunStarted and one TestRunFinished", info.State.Msgs)
	}
	var started, finished int
	for _, ev := range w.events.of(runID) {
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
	w := newWorld(t)
	w.startService(w.config())

	runID := w.run(&sourcev1.Pipeline{Build: &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "true"}}}})
	w.publish(w.buildFinished(runID, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))

	f := w.events.finished(runID)
	if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_PASSED || f.GetCounts().GetPassed() != 0 ||
		f.GetCounts().GetFailed() != 0 || f.GetCounts().GetSkipped() != 0 {
		t.Errorf("TestRunFinished = %v, want PASSED with zero counts", f)
	}
}

func TestErrors(t *testing.T) {
	w := newWorld(t)
	w.startService(w.config())

	missingReport := w.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Steps:   []*sourcev1.Step{{Name: "unit", Run: "echo no report written"}},
		Reports: []*sourcev1.ReportSpec{{Path: "reports/missing.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
	}})
	brokenReport := w.run(&sourcev1.Pipeline{Test: &sourcev1.TestSpec{
		Steps:   []*sourcev1.Step{{Name: "unit", Run: "printf '<testsuite name=\"s\">\\n<testcase name=\"a\">\\n</testsuite>\\n' > junit.xml"}},
		Reports: []*sourcev1.ReportSpec{{Path: "junit.xml", Format: sourcev1.ReportFormat_REPORT_FORMAT_JUNIT_XML}},
	}})
	badChecksum := w.run(helloPipeline(""))
	corrupt := w.putArtifact(badChecksum, "hello", helloArtifact)
	realSum := corrupt.GetSha256()
	corrupt.Sha256 = strings.Repeat("0", 64)
	// An event from a build service that predates pipelines in BuildFinished.
	noPipeline := "run-without-pipeline"

	w.publish(w.buildFinished(missingReport, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	w.publish(w.buildFinished(brokenReport, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))
	w.publish(w.buildFinished(badChecksum, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED, corrupt))
	w.publish(w.buildFinished(noPipeline, buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED))

	for _, tt := range []struct {
		name, runID, reason string
	}{
		{"missing report", missingReport, `report file "reports/missing.xml" not found`},
		{"malformed report", brokenReport, `report file "junit.xml": line 3: XML syntax error: element <testcase> closed by </testsuite>`},
		{"artifact checksum", badChecksum, `artifact "hello": content does not match the build's record: sha256 is ` + realSum + `, the build recorded ` + strings.Repeat("0", 64)},
		{"no pipeline", noPipeline, "the BuildFinished event carries no pipeline (a build service older than this test service published it); trigger the run again"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := w.events.finished(tt.runID)
			if f.GetStatus() != testv1.TestRunStatus_TEST_RUN_STATUS_ERROR || f.GetFailureReason() != tt.reason {
				t.Errorf("TestRunFinished %s %q, want ERROR %q", f.GetStatus(), f.GetFailureReason(), tt.reason)
			}
		})
	}
}
