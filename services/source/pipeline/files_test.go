package pipeline_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/services/source/pipeline"
)

func parseFiles(t *testing.T, files ...string) ([]pipeline.Named, error) {
	t.Helper()
	var src []pipeline.Source
	for i := 0; i < len(files); i += 2 {
		src = append(src, pipeline.Source{Path: files[i], Data: []byte(files[i+1])})
	}
	return pipeline.ParseFiles(src, pipeline.Limits{})
}

// problems is every problem of err, one per line, or fails.
func problems(t *testing.T, err error) string {
	t.Helper()
	var bad *pipeline.Errors
	if !errors.As(err, &bad) {
		t.Fatalf("error %v, want *pipeline.Errors", err)
	}
	return bad.Error()
}

func TestParseFilesNamesEachPipelineAndKeepsTheRunsOwnToOne(t *testing.T) {
	t.Parallel()
	named, err := parseFiles(t,
		".sluice.yaml", "version: 1\nbuild:\n  steps:\n    - name: compile\n      run: make\nconcurrency:\n  group: branch\nrelease:\n  branches: [main]\n",
		".sluice/docs.yaml", "version: 1\nbuild:\n  steps:\n    - name: compile\n      run: mkdocs\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(named) != 2 || named[0].Name != "" || named[1].Name != "docs" || named[1].Path != ".sluice/docs.yaml" {
		t.Fatalf("named %+v", named)
	}
	_, err = parseFiles(t,
		".sluice.yaml", "version: 1\nrelease:\n  branches: [main]\n",
		".sluice/a.yaml", "version: 1\nbuild:\n  steps:\n    - name: a\n      run: x\nstatuses: stages\nrelease:\n  branches: [main]\n",
		".sluice/B.yaml", "version: 1\n",
		".sluice/c.yaml", "version: 1\nbuild: {steps: [{name: c, run: x, depends_on: [a]}]}\n")
	got := problems(t, err)
	for _, want := range []string{
		".sluice/a.yaml:6:1: statuses: is a setting of the whole run, which only .sluice.yaml may have (hint: set it in .sluice.yaml)",
		".sluice/a.yaml:7:1: release: .sluice.yaml has the run's release section already",
		".sluice/B.yaml: a pipeline file is .sluice.yaml or .sluice/<name>.yaml",
		// A file's steps are its own: depends_on names none of another's.
		`.sluice/c.yaml:2:48: the stage has no step "a"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	// Without .sluice.yaml, the first file under .sluice/ with a release
	// has the run's.
	if _, err := parseFiles(t, ".sluice/a.yaml", "version: 1\nrelease:\n  branches: [main]\n", ".sluice/b.yaml", "version: 1\nrelease:\n  branches: [main]\n"); !strings.Contains(fmt.Sprint(err), ".sluice/b.yaml:2:1: release: .sluice/a.yaml has") {
		t.Errorf("two releases under .sluice/: %v", err)
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	const db = "  services:\n    - name: db\n      image: postgres:16\n"
	named, err := parseFiles(t,
		".sluice.yaml", "version: 1\nbuild:\n  max_parallel: 2\n  steps:\n    - name: compile\n      run: make\n  artifacts:\n    - name: bin\n      path: bin/app\ntest:\n  steps:\n    - name: unit\n      run: go test\n"+db+"  reports:\n    - path: out.xml\n      format: junit\n"+"statuses: stages\n",
		".sluice/docs.yaml", "version: 1\nbuild:\n  max_parallel: 3\n  steps:\n    - name: compile\n      run: mkdocs\ntest:\n  steps:\n    - name: unit\n      run: linkcheck\n"+db+"  reports:\n    - path: out.xml\n      format: junit\n")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.Merge(named)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, st := range append(p.GetBuild().GetSteps(), p.GetTest().GetSteps()...) {
		steps = append(steps, st.GetPipeline()+"/"+st.GetName())
	}
	if got := strings.Join(steps, " "); got != "/compile docs/compile /unit docs/unit" {
		t.Errorf("steps %s", got)
	}
	if mp := p.GetBuild().GetPipelineMaxParallel(); len(mp) != 2 || mp[""] != 2 || mp["docs"] != 3 || p.GetTest().GetPipelineMaxParallel() != nil {
		t.Errorf("pipeline_max_parallel: build %v, test %v; want 2 for .sluice.yaml and 3 for docs, in the build alone", mp, p.GetTest().GetPipelineMaxParallel())
	}
	if p.GetBuild().GetMaxParallel() != 3 || len(p.GetTest().GetServices()) != 1 || len(p.GetTest().GetReports()) != 1 ||
		len(p.GetBuild().GetArtifacts()) != 1 || p.GetStatuses().String() != "COMMIT_STATUSES_STAGES" {
		t.Errorf("merged %v", p)
	}
	if named[1].Pipeline.GetBuild().GetSteps()[0].GetPipeline() != "" {
		t.Error("Merge changed the file's own pipeline")
	}

	// Two artifacts of one name, or two different services of one name,
	// cannot share a stage.
	named, err = parseFiles(t,
		".sluice.yaml", "version: 1\nbuild:\n  steps:\n    - name: a\n      run: x\n  artifacts:\n    - name: bin\n      path: a\n"+db,
		".sluice/b.yaml", "version: 1\nbuild:\n  steps:\n    - name: b\n      run: x\n  artifacts:\n    - name: bin\n      path: b\n"+strings.Replace(db, "16", "17", 1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pipeline.Merge(named)
	got := problems(t, err)
	for _, want := range []string{
		".sluice/b.yaml: build: artifact bin: .sluice.yaml has an artifact of that name",
		".sluice/b.yaml: service db: .sluice.yaml has a different service of that name",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}

	// A stage holds at most 100 steps, whichever files they are in.
	var files []string
	for i := range 3 {
		var b strings.Builder
		b.WriteString("version: 1\nbuild:\n  steps:\n")
		for j := range 40 {
			fmt.Fprintf(&b, "    - name: s%d\n      run: x\n", j)
		}
		files = append(files, fmt.Sprintf(".sluice/p%d.yaml", i), b.String())
	}
	named, err = parseFiles(t, files...)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pipeline.Merge(named)
	if got := problems(t, err); !strings.Contains(got, "build: the run's pipelines have 120 steps together; at most 100") {
		t.Errorf("120 steps: %s", got)
	}
}
