package e2e

import (
	"strings"
	"testing"
)

// stepGraphPipeline uses every part of the step model: depends_on, a
// matrix, retry, allow_failure and conditions on the branch, on what the
// commit changed and on a failure.
const stepGraphPipeline = `version: 1
build:
  steps:
    - name: deps
      run: echo deps > deps.out
    - name: compile
      run: mkdir -p out && echo "compiled for $TARGET" && echo ${{ matrix.target }} > out/${{ matrix.target }}
      env: {TARGET: "${{ matrix.target }}"}
      matrix: {target: [linux, darwin]}
      depends_on: [deps]
    - name: flaky
      run: if [ -e tried ]; then echo "flaky passed"; else touch tried; echo "flaky failed"; exit 1; fi
      retry: 1
      depends_on: [deps]
    - name: release-only
      run: exit 1
      when: branch == "release"
  artifacts:
    - {name: linux, path: out/linux}
test:
  steps:
    - name: lint
      run: echo "lint is unhappy"; exit 3
      allow_failure: true
    - name: docs
      run: echo "docs changed"
      when: changed("docs/**")
    - name: unit
      run: grep -q linux out/linux && echo "unit saw the artifact"
      depends_on: [lint]
    - name: on-failure
      run: echo "something failed"
      when: failure()
`

// A pipeline of the step model runs on ` + "`sluice up`" + `: source expands
// and checks it, build runs its graph, test evaluates conditions on the
// run's branch and changed paths, and a later commit that changes docs/
// runs the step that asks for it.
func TestStepGraphOnTheAllInOne(t *testing.T) {
	t.Parallel()
	p, _ := startAllInOne(t, t.TempDir())
	repo := newGitRepo(t, map[string]string{".sluice.yaml": stepGraphPipeline, "main.go": "package main\n"})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "graph")
	out, code := cli(t, p.env, "trigger", "graph", "--follow")
	if code != 0 {
		t.Fatalf("trigger --follow exit %d:\n%s", code, out)
	}
	runID := lastRunID(t, p, "graph")
	logs := mustCLI(t, p.env, "logs", runID)
	for _, want := range []string{
		"compiled for linux", "compiled for darwin",
		"--- step flaky failed on try 1 of 2; it runs again", "flaky passed",
		`--- step release-only skipped: when branch == "release" is false`,
		"--- step lint failed; allow_failure: the tests go on",
		`--- step docs skipped: when changed("docs/**") is false`,
		"unit saw the artifact",
		"--- step on-failure skipped: when failure() is false",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the run's log lacks %q:\n%s", want, logs)
		}
	}
	if show := mustCLI(t, p.env, "show", runID); !strings.Contains(show, "status      succeeded") {
		t.Errorf("the run did not succeed:\n%s", show)
	}

	// A commit that changes docs/ runs the docs step.
	repo.CommitFile("docs/guide.md", "# guide\n", "docs")
	if out, code := cli(t, p.env, "trigger", "graph", "--follow"); code != 0 {
		t.Fatalf("trigger --follow exit %d:\n%s", code, out)
	}
	second := lastRunID(t, p, "graph")
	if second == runID {
		t.Fatal("no second run")
	}
	if logs := mustCLI(t, p.env, "logs", second); !strings.Contains(logs, "docs changed") {
		t.Errorf("the docs step did not run after docs/ changed:\n%s", logs)
	}
}

// A pipeline whose graph is wrong fails its run at once, with the file's
// position of each problem.
func TestABadStepGraphFailsTheRunWithPositions(t *testing.T) {
	t.Parallel()
	p, _ := startAllInOne(t, t.TempDir())
	repo := newGitRepo(t, map[string]string{".sluice.yaml": `version: 1
build:
  steps:
    - {name: a, run: x, depends_on: [b]}
    - {name: b, run: x, depends_on: [a]}
    - {name: c, run: x, when: 'status("nope") == "failed"'}
`})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "cyclic")
	out, _ := cli(t, p.env, "trigger", "cyclic", "--follow")
	show := mustCLI(t, p.env, "show", lastRunID(t, p, "cyclic"))
	for _, want := range []string{"status      failed", ".sluice.yaml:4:37: depends_on makes a cycle: a -> b -> a", `.sluice.yaml:6:39: condition: status("nope"): the stage has no step "nope"`} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s\n(trigger said:\n%s)", want, show, out)
		}
	}
}
