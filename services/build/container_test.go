package build_test

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/executor/container"
	"github.com/sluicehq/sluice/platform/executor/container/containertest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/build"
)

// logText is the run's log as one text.
func logText(t *testing.T, i *instance, runID string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range i.logs(t, runID).GetLines() {
		b.WriteString(l.GetText() + "\n")
	}
	return b.String()
}

// A step that names an image runs in a container of it, in the checkout,
// reaching the stage's service by its name; what it makes is the
// build's artifact. A step without an image runs as a process beside it.
func TestImageStepsRunInContainers(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	h := newHarness(t, build.Config{WorkerID: "worker-1", Containers: containertest.Config()})
	repo := gitRepo(t, map[string]string{"hello.txt": "hello\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{
		Services: []*sourcev1.ServiceSpec{{Name: "web", Image: img,
			Command: []string{"sh", "-c", "mkdir -p /tmp/www && echo from-$SLUICE_REPOSITORY > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"}}},
		Steps: []*sourcev1.Step{
			{Name: "in-container", Image: img, Run: `mkdir -p bin && for i in $(seq 50); do wget -q -O bin/page http://web:8080/ && break; sleep 0.1; done; cat hello.txt bin/page > bin/out; echo "pwd=$(pwd) commit=$SLUICE_COMMIT"`},
			{Name: "on-host", Run: `test -f bin/out && echo "host sees $(cat bin/out | tr '\n' ' ')"`},
		},
		Artifacts: []*sourcev1.ArtifactSpec{{Name: "out", Path: "bin/out"}},
	})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	text := logText(t, h.instance, req.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("build %v: %s\n%s", fin.GetStatus(), fin.GetFailureReason(), text)
	}
	for _, want := range []string{"pwd=" + container.Workspace + " commit=" + repo.commit, "host sees hello from-hello"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	if len(fin.GetArtifacts()) != 1 || fin.GetArtifacts()[0].GetSize() != int64(len("hello\nfrom-hello\n")) {
		t.Errorf("artifacts %v", fin.GetArtifacts())
	}
}

// On a worker without a container engine, a build whose step names an
// image fails at once, before any step runs, naming the step, its image
// and why.
func TestImageStepWithoutEngineFailsAtOnce(t *testing.T) {
	t.Parallel()
	cfg := containertest.Config()
	cfg.Engine = container.EngineNone
	h := newHarness(t, build.Config{WorkerID: "worker-1", Containers: cfg})
	repo := gitRepo(t, map[string]string{"a": "a\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{
		{Name: "first", Run: "echo must-not-run"},
		{Name: "compile", Image: "golang:1.25", Run: "go build ./..."},
	}})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	reason := fin.GetFailureReason()
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_FAILED ||
		!strings.Contains(reason, `step "compile" runs in image golang:1.25`) || !strings.Contains(reason, "container-engine setting is none") {
		t.Fatalf("build %v, reason %q", fin.GetStatus(), reason)
	}
	if text := logText(t, h.instance, req.GetRunId()); strings.Contains(text, "must-not-run") || !strings.Contains(text, reason) {
		t.Fatalf("log:\n%s", text)
	}
}

// A matrix of image steps runs its cells in containers at once, each its
// own step: both cells wait for the other's file in the shared workspace
// (one after the other, they would time out).
func TestAMatrixOfImageStepsRunsInParallel(t *testing.T) {
	t.Parallel()
	img := containertest.Busybox(t)
	h := newHarness(t, build.Config{WorkerID: "worker-1", Containers: containertest.Config()})
	repo := gitRepo(t, map[string]string{"README.md": "# matrix\n"})
	meet := func(mine, other string) string {
		return "touch " + mine + "; i=0; while [ ! -e " + other + " ]; do i=$((i+1)); [ $i -gt 300 ] && exit 3; sleep 0.1; done; echo met " + other
	}
	req := runRequest(repo, &sourcev1.BuildSpec{
		Steps: []*sourcev1.Step{
			{Name: "prepare", Run: "true"},
			{Name: "cell-a", MatrixOf: "cell", Matrix: map[string]string{"v": "a"}, Image: img, Run: meet("a.here", "b.here"), DependsOn: []string{"prepare"}},
			{Name: "cell-b", MatrixOf: "cell", Matrix: map[string]string{"v": "b"}, Image: img, Run: meet("b.here", "a.here"), DependsOn: []string{"prepare"}},
		},
	})
	h.publish(t, req)
	fin := h.finished(t, req.GetRunId())
	text := logText(t, h.instance, req.GetRunId())
	if fin.GetStatus() != buildv1.BuildStatus_BUILD_STATUS_SUCCEEDED {
		t.Fatalf("build %v: %s\n%s", fin.GetStatus(), fin.GetFailureReason(), text)
	}
	for _, want := range []string{"met b.here", "met a.here"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
}
