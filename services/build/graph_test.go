package build_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	buildeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/events/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// A build's steps run as their graph says: b1 and b2 at once after a
// (each waits for the other's file, so one after the other would time
// out), flaky again after its first try fails, lint failing without
// failing the build, dev-only skipped by its condition, on-failure skipped
// as nothing failed that counts, and last after all of them.
func TestStepsRunAsTheirGraphSays(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"README.md": "# graph\n"})
	meet := func(mine, other string) string {
		return "touch " + mine + "; i=0; while [ ! -e " + other + " ]; do i=$((i+1)); [ $i -gt 200 ] && exit 3; sleep 0.05; done"
	}
	req := runRequest(repo, &sourcev1.BuildSpec{
		MaxParallel: 2,
		Steps: []*sourcev1.Step{
			{Name: "a", Run: "echo a > a.out"},
			{Name: "b1", Run: meet("b1.here", "b2.here"), DependsOn: []string{"a"}},
			{Name: "b2", Run: meet("b2.here", "b1.here"), DependsOn: []string{"a"}},
			{Name: "flaky", Run: "if [ -e tried ]; then echo second; else touch tried; echo first; exit 1; fi", DependsOn: []string{"a"}, Retry: 2},
			{Name: "lint", Run: "echo lint warns; exit 4", DependsOn: []string{"a"}, AllowFailure: true},
			{Name: "dev-only", Run: "touch dev.out", When: `branch == "dev"`},
			{Name: "on-failure", Run: "touch failure.out", DependsOn: []string{"lint"}, When: "failure()"},
			{Name: "last", Run: "test -e a.out && test -e b1.here && test -e tried", DependsOn: []string{"b1", "b2", "flaky", "lint"}},
		},
	})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	h.settle(t)
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("build %s: %s\n%s", fin.GetStatus(), fin.GetFailureReason(), strings.Join(texts(h.logs(t, req.GetRunId()).GetLines()), "\n"))
	}
	b := h.build(t, req.GetRunId())
	var got []string
	for _, st := range b.GetSteps() {
		got = append(got, strings.ToLower(strings.TrimPrefix(st.GetStatus().String(), "STEP_STATUS_"))+"/"+strconv.Itoa(int(st.GetTries())))
	}
	want := []string{"succeeded/1", "succeeded/1", "succeeded/1", "succeeded/2", "failed/1", "skipped/0", "skipped/0", "succeeded/1"}
	if !slices.Equal(got, want) {
		t.Errorf("steps (status/tries) %v, want %v", got, want)
	}
	if r := b.GetSteps()[5].GetReason(); r != `when branch == "dev" is false` {
		t.Errorf("dev-only skipped because %q", r)
	}
	// One StepFinished per step, the last try's; lint's says it may fail.
	finished := map[string]*buildeventsv1.StepFinished{}
	for _, ev := range h.rec.of(req.GetRunId()) {
		if p, ok := ev.Payload.(*buildeventsv1.StepFinished); ok {
			if finished[p.GetStep()] != nil {
				t.Errorf("two StepFinished of %s", p.GetStep())
			}
			finished[p.GetStep()] = p
		}
	}
	if len(finished) != 8 || finished["flaky"].GetTries() != 2 || finished["flaky"].GetStatus() != buildv1.StepStatus_STEP_STATUS_SUCCEEDED ||
		!finished["lint"].GetAllowFailure() || finished["dev-only"].GetStatus() != buildv1.StepStatus_STEP_STATUS_SKIPPED {
		t.Errorf("StepFinished events %v", finished)
	}
	lines := texts(h.logs(t, req.GetRunId()).GetLines())
	for _, want := range []string{
		"--- step flaky failed on try 1 of 3; it runs again",
		"--- step flaky, try 2 of 3: if [ -e tried ]",
		"--- step lint failed; allow_failure: the build goes on",
		`--- step dev-only skipped: when branch == "dev" is false`,
		"--- step on-failure skipped: when failure() is false",
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("the log lacks %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
}

// A step that fails without allow_failure fails the build; the steps that
// depend on it are skipped, a step under way finishes, and one whose
// condition asks for failure() runs.
func TestAFailedStepFailsTheBuildAndRunsItsFailureSteps(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"README.md": "# graph\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{
		Steps: []*sourcev1.Step{
			{Name: "unit-1", MatrixOf: "unit", Matrix: map[string]string{"n": "1"}, Run: "exit 0"},
			{Name: "unit-2", MatrixOf: "unit", Matrix: map[string]string{"n": "2"}, Run: "exit 7", Retry: 1},
			{Name: "package", Run: "touch package.out", DependsOn: []string{"unit-1", "unit-2"}},
			{Name: "report", Run: `echo "unit failed"`, DependsOn: []string{"unit-1", "unit-2"}, When: `status("unit") == "failed"`},
		},
	})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || fin.GetFailedStep() != "unit-2" || fin.GetExitCode() != 7 {
		t.Fatalf("build %s, failed step %q code %d; want FAILED by unit-2, 7", fin.GetStatus(), fin.GetFailedStep(), fin.GetExitCode())
	}
	b := h.build(t, req.GetRunId())
	var got []string
	for _, st := range b.GetSteps() {
		got = append(got, st.GetName()+"="+strings.ToLower(strings.TrimPrefix(st.GetStatus().String(), "STEP_STATUS_")))
	}
	if want := []string{"unit-1=succeeded", "unit-2=failed", "package=skipped", "report=succeeded"}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	if b.GetSteps()[1].GetTries() != 2 || b.GetSteps()[2].GetReason() != "step unit-2 failed" {
		t.Errorf("unit-2 ran %d times; package skipped because %q", b.GetSteps()[1].GetTries(), b.GetSteps()[2].GetReason())
	}
}

// A run of several pipelines (pipeline files) holds each one's steps as a
// graph of its own: the same name in two is two steps, named
// <pipeline>/<name> in the build, its log and its events; one pipeline's
// failure fails the build but skips no step of another.
func TestPipelinesRunAsGraphsOfTheirOwn(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"README.md": "# pipelines\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{
		Steps: []*sourcev1.Step{
			{Name: "compile", Run: "echo main"},
			{Name: "check", Run: "exit 3"},
			{Pipeline: "docs", Name: "compile", Run: "sleep 0.5; echo docs > docs.out"},
			{Pipeline: "docs", Name: "check", Run: `test -e docs.out && test "$SLUICE_STEP" = docs/check`},
		},
	})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || fin.GetFailedStep() != "check" || fin.GetExitCode() != 3 {
		t.Fatalf("build %s, failed step %q code %d; want FAILED by check, 3", fin.GetStatus(), fin.GetFailedStep(), fin.GetExitCode())
	}
	h.settle(t)
	b := h.build(t, req.GetRunId())
	var got []string
	for _, st := range b.GetSteps() {
		got = append(got, st.GetName()+"="+strings.ToLower(strings.TrimPrefix(st.GetStatus().String(), "STEP_STATUS_")))
	}
	if want := []string{"compile=succeeded", "check=failed", "docs/compile=succeeded", "docs/check=succeeded"}; !slices.Equal(got, want) {
		t.Errorf("steps %v, want %v", got, want)
	}
	finished := map[string]bool{}
	for _, ev := range h.rec.of(req.GetRunId()) {
		if p, ok := ev.Payload.(*buildeventsv1.StepFinished); ok {
			finished[p.GetStep()] = true
		}
	}
	if len(finished) != 4 || !finished["docs/check"] || !finished["check"] {
		t.Errorf("StepFinished of %v, want the four steps", finished)
	}
	lines := texts(h.logs(t, req.GetRunId()).GetLines())
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "--- step docs/check exited with code 0") }) {
		t.Errorf("the log lacks docs/check's end:\n%s", strings.Join(lines, "\n"))
	}
}
