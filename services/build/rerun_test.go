package build_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/platform/artifacts"
	"github.com/sluicehq/sluice/platform/ids"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// A rerun from the test stage runs no build step: its build lends the
// artifacts of the rerun run's build, which must have succeeded for the
// same repository and commit; otherwise the build fails saying to rerun
// every stage.
func TestARerunFromTheTestsReusesTheBuild(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"README.md": "# rerun\n"})
	spec := &sourcev1.BuildSpec{
		Steps:     []*sourcev1.Step{{Name: "compile", Run: "mkdir -p out; date +%s%N > out/app; echo compiled"}},
		Artifacts: []*sourcev1.ArtifactSpec{{Name: "app", Path: "out/app"}},
	}
	first := runRequest(repo, spec)
	h.publish(t, first)
	built := h.finished(t, first.GetRunId())
	if built.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("first build %s", built.GetStatus())
	}

	rerun := func(of string, tune func(*sourceeventsv1.RunRequested)) *sourceeventsv1.RunRequested {
		req, _ := proto.Clone(first).(*sourceeventsv1.RunRequested)
		req.RunId, req.RerunOf, req.RerunFrom = ids.New(), of, "test"
		if tune != nil {
			tune(req)
		}
		h.publish(t, req)
		return req
	}
	again := rerun(first.GetRunId(), nil)
	fin := h.finished(t, again.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED || fin.GetReusedBuild() != built.GetBuildId() ||
		fin.GetRerunOf() != first.GetRunId() || len(fin.GetArtifacts()) != 1 || fin.GetArtifacts()[0].GetSha256() != built.GetArtifacts()[0].GetSha256() ||
		fin.GetArtifacts()[0].GetObject() != artifacts.ObjectName(again.GetRunId(), "app") {
		t.Fatalf("rerun's build: %s, reused %q, artifacts %v; want the first build's (%s)", fin.GetStatus(), fin.GetReusedBuild(), fin.GetArtifacts(), built.GetBuildId())
	}
	if logs := strings.Join(texts(h.logs(t, again.GetRunId()).GetLines()), "\n"); strings.Contains(logs, "compiled") || !strings.Contains(logs, "--- reusing build "+built.GetBuildId()) {
		t.Errorf("the rerun's log:\n%s", logs)
	}
	if b := h.build(t, again.GetRunId()); len(b.GetArtifacts()) != 1 || b.GetSteps()[0].GetStatus() != buildv1.StepStatus_STEP_STATUS_SKIPPED {
		t.Errorf("the rerun's build: artifacts %v, steps %v", b.GetArtifacts(), b.GetSteps())
	}

	// Artifacts no longer stored cannot be reused.
	gone := runRequest(repo, spec)
	h.publish(t, gone)
	h.finished(t, gone.GetRunId())
	store, err := artifacts.Open(t.Context(), h.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Delete(t.Context(), artifacts.ObjectName(gone.GetRunId(), "app")); err != nil {
		t.Fatal(err)
	}

	broken := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "compile", Run: "exit 2"}}})
	h.publish(t, broken)
	h.finished(t, broken.GetRunId())
	other := gitRepo(t, map[string]string{"README.md": "# another\n"})
	for name, req := range map[string]*sourceeventsv1.RunRequested{
		"did not succeed (FAILED)": rerun(broken.GetRunId(), nil),
		"is not known here":        rerun("no-such-run", nil),
		"cannot be reused":         rerun(gone.GetRunId(), nil),
		"another repository or commit": rerun(first.GetRunId(), func(r *sourceeventsv1.RunRequested) {
			r.Commit, r.Repository.Url = other.commit, other.dir
		}),
	} {
		fin := h.finished(t, req.GetRunId())
		if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED || !strings.Contains(fin.GetFailureReason(), name) {
			t.Errorf("%s: build %s (%q)", name, fin.GetStatus(), fin.GetFailureReason())
		}
	}
	h.settle(t)
}
