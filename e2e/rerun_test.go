package e2e

import (
	"regexp"
	"strings"
	"testing"
)

// rerunPipeline's build makes an artifact that differs on every build
// (the time it was built); its test fails until the repository's secret
// MODE says pass.
const rerunPipeline = `version: 1
build:
  steps:
    - name: compile
      run: mkdir -p out; date +%s%N > out/app; echo built
  artifacts:
    - {name: app, path: out/app}
test:
  steps:
    - name: unit
      env:
        MODE: {secret: MODE}
      run: test "$MODE" = pass
`

// `sluice rerun --failed` reruns a run whose tests failed from its test
// stage: no build step runs, the new run's build lends the first build's
// artifact (the same digest), and the tests pass this time. A rerun
// without --failed builds again; --failed on a run that succeeded, and a
// rerun of a run that has not ended, are refused.
func TestRerunTheFailedStageOnTheAllInOne(t *testing.T) {
	t.Parallel()
	p, _ := startAllInOne(t, t.TempDir())
	repo := newGitRepo(t, map[string]string{".sluice.yaml": rerunPipeline})
	mustCLI(t, p.env, "repo", "add", repo.Dir, "--name", "flaky")
	cliStdin(t, p.env, "fail", "secret", "set", "flaky", "MODE")
	if out, code := cli(t, p.env, "trigger", "flaky", "--follow"); code != 1 {
		t.Fatalf("trigger --follow exit %d, want 1 (the tests fail):\n%s", code, out)
	}
	first := lastRunID(t, p, "flaky")

	cliStdin(t, p.env, "pass", "secret", "set", "flaky", "MODE")
	out, code := cli(t, p.env, "rerun", first, "--failed", "--follow")
	if code != 0 {
		t.Fatalf("rerun --failed --follow exit %d:\n%s", code, out)
	}
	second := lastRunID(t, p, "flaky")
	show := mustCLI(t, p.env, "show", second)
	for _, want := range []string{"status      succeeded", "rerun of    " + first + ", from its test stage", "reused from run " + first} {
		if !strings.Contains(show, want) {
			t.Errorf("show of the rerun lacks %q:\n%s", want, show)
		}
	}
	logs := mustCLI(t, p.env, "logs", second)
	if strings.Contains(logs, "] built") || !strings.Contains(logs, "--- reusing build") {
		t.Errorf("the rerun built again:\n%s", logs)
	}
	digest := regexp.MustCompile(`sha256 ([0-9a-f]{64})`)
	a, b := digest.FindStringSubmatch(mustCLI(t, p.env, "logs", first)), digest.FindStringSubmatch(logs)
	if a == nil || b == nil || a[1] != b[1] {
		t.Errorf("the rerun's artifact is not the first build's: %v, %v", a, b)
	}

	if out, code := cli(t, p.env, "rerun", second, "--failed"); code == 0 || !strings.Contains(out, "no stage failed") {
		t.Errorf("rerun --failed of a run that succeeded: exit %d:\n%s", code, out)
	}
	if out, code := cli(t, p.env, "rerun", second, "--follow"); code != 0 {
		t.Fatalf("rerun --follow exit %d:\n%s", code, out)
	}
	third := lastRunID(t, p, "flaky")
	if logs := mustCLI(t, p.env, "logs", third); !strings.Contains(logs, "] built") {
		t.Errorf("a full rerun did not build:\n%s", logs)
	}
}
