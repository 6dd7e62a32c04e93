package source_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// stepsOf lists a stage's steps as "<pipeline>/<name>" ("/<name>" for
// .sluice.yaml's).
func stepsOf(steps []*sourcev1.Step) string {
	var out []string
	for _, st := range steps {
		out = append(out, st.GetPipeline()+"/"+st.GetName())
	}
	return strings.Join(out, " ")
}

// TestSeveralPipelineFiles: a repository with .sluice.yaml and
// .sluice/*.yaml has a pipeline per file; a push runs those whose on:
// wants it, each step saying its pipeline (the same step name in two is
// two steps); a manual trigger runs them all; a push none wants is
// ignored, each file saying why; a file that sets what is the whole run's,
// a second release, and a file named as no pipeline fail the run at
// file:line:col; a schedule runs the pipelines that have it.
func TestSeveralPipelineFiles(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "multi", "main", validPipeline+`on:
  push:
    paths: ["src/**"]
`)
	src.Write(".sluice/docs.yaml", `version: 1
build:
  steps:
    - name: compile
      run: mkdocs build
on:
  push:
    paths: ["docs/**"]
`)
	src.Write(".sluice/nightly.yaml", `version: 1
test:
  steps:
    - name: soak
      run: ./soak.sh
on:
  push:
    branches: [soak]
  schedule:
    - cron: "0 3 * * *"
`)
	src.Write(".sluice/notes.txt", "not a pipeline\n")
	src.Commit("pipelines\n")
	repo := h.register(src.Dir)
	push := func(files map[string]string) webhookAnswer {
		t.Helper()
		sha := src.CommitFiles("change\n", files)
		body := pushBody("refs/heads/main", sha)
		return h.hook("multi", "push", "d-"+sha, sign(repo.WebhookSecret, body), body)
	}
	queued := func(a webhookAnswer) *sourcev1.Run {
		t.Helper()
		if a.code != http.StatusAccepted || a.body["status"] != "queued" {
			t.Fatalf("%d %v, want 202 queued", a.code, a.body)
		}
		return h.getRun(a.body["run_id"])
	}

	code := queued(push(map[string]string{"src/a.go": "package a\n"}))
	if got := stepsOf(code.Pipeline.GetBuild().GetSteps()) + " | " + stepsOf(code.Pipeline.GetTest().GetSteps()); got != "/compile | /unit" {
		t.Errorf("a push to src/: steps %s, want .sluice.yaml's alone", got)
	}
	if code.Pipeline.GetRelease() == nil || len(code.Pipeline.GetOn().GetPush().GetPaths()) == 0 {
		t.Errorf("a push to src/: release %v, on %v; want .sluice.yaml's", code.Pipeline.GetRelease(), code.Pipeline.GetOn())
	}
	docs := queued(push(map[string]string{"docs/index.md": "# hi\n"}))
	if got := stepsOf(docs.Pipeline.GetBuild().GetSteps()); got != "docs/compile" || docs.Pipeline.GetTest() != nil || docs.Pipeline.GetRelease() != nil {
		t.Errorf("a push to docs/: build %s, test %v, release %v; want docs's compile alone", got, docs.Pipeline.GetTest(), docs.Pipeline.GetRelease())
	}
	// The whole run's settings stay .sluice.yaml's when its pipeline is
	// not one of the run's.
	if len(docs.Pipeline.GetOn().GetPush().GetPaths()) == 0 {
		t.Errorf("a push to docs/: on %v, want .sluice.yaml's", docs.Pipeline.GetOn())
	}
	both := queued(push(map[string]string{"docs/a.md": "a\n", "src/b.go": "package a\n"}))
	if got := stepsOf(both.Pipeline.GetBuild().GetSteps()); got != "/compile docs/compile" {
		t.Errorf("a push to src/ and docs/: build %s", got)
	}
	a := push(map[string]string{"README": "changed\n"})
	if a.code != http.StatusAccepted || a.body["status"] != "ignored" {
		t.Fatalf("a push no file wants: %d %v, want ignored", a.code, a.body)
	}
	mustContain(t, a.body["reason"], ".sluice.yaml: the push changed no path matching the pipeline's on.push.paths (src/**)",
		".sluice/docs.yaml: the push changed no path", ".sluice/nightly.yaml: branch main matches none of the pipeline's on.push.branches (soak)")

	all := h.trigger("multi", "main")
	if got := stepsOf(all.Pipeline.GetBuild().GetSteps()) + " | " + stepsOf(all.Pipeline.GetTest().GetSteps()); got != "/compile docs/compile | /unit nightly/soak" {
		t.Errorf("a manual run: %s, want every pipeline", got)
	}

	// A schedule runs the pipelines that have it.
	ctx := context.Background()
	h.svc.ScheduleOnce(ctx, time.Date(2026, 12, 6, 2, 59, 0, 0, time.UTC))
	h.svc.ScheduleOnce(ctx, time.Date(2026, 12, 6, 3, 0, 4, 0, time.UTC))
	var nightly []*sourcev1.Run
	for _, r := range h.listRuns("multi") {
		if r.Trigger == sourcev1.Trigger_TRIGGER_SCHEDULE {
			nightly = append(nightly, r)
		}
	}
	if len(nightly) != 1 {
		t.Fatalf("%d runs of the schedule, want 1", len(nightly))
	}
	if p := nightly[0].Pipeline; p.GetBuild() != nil || stepsOf(p.GetTest().GetSteps()) != "nightly/soak" || p.GetRelease() != nil {
		t.Errorf("the schedule's run: %v, want nightly's soak alone", p)
	}

	for _, bad := range []struct {
		file, content string
		want          []string
	}{
		{".sluice/lint.yaml", "version: 1\nbuild:\n  steps:\n    - name: lint\n      run: x\nconcurrency:\n  group: branch\n",
			[]string{".sluice/lint.yaml:6:1: concurrency: is a setting of the whole run, which only .sluice.yaml may have"}},
		{".sluice/ship.yaml", "version: 1\nrelease:\n  branches: [main]\n",
			[]string{".sluice/ship.yaml:2:1: release: .sluice.yaml has the run's release section already"}},
		{".sluice/Lint Me.yaml", "version: 1\n", []string{".sluice/Lint Me.yaml: a pipeline file is .sluice.yaml or .sluice/<name>.yaml"}},
	} {
		sha := src.CommitFiles("bad\n", map[string]string{bad.file: bad.content})
		run := h.trigger("multi", "main")
		if run.Commit != sha || run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED {
			t.Errorf("%s: run of %s %s, want a failed run of %s", bad.file, run.Commit, run.Status, sha)
		}
		mustContain(t, run.FailureReason, bad.want...)
		src.Remove(bad.file)
		src.Commit("fixed\n")
	}

	// A name go-git would not read a file by (a control character in it;
	// the git command makes such a commit) is a bad name, not a mirror
	// that cannot be read.
	gitCLI := func(args ...string) {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "git", append([]string{"-C", src.Dir, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	tabbed := filepath.Join(src.Dir, ".sluice", "lint\tme.yaml")
	if err := os.WriteFile(tabbed, []byte("version: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gitCLI("add", "-A")
	gitCLI("commit", "-q", "-m", "a name with a tab")
	if run := h.trigger("multi", "main"); run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED ||
		!strings.HasPrefix(run.FailureReason, ".sluice/lint\tme.yaml: a pipeline file is .sluice.yaml or .sluice/<name>.yaml") {
		t.Errorf("a pipeline file named with a tab: %s %q", run.Status, run.FailureReason)
	}
	if err := os.Remove(tabbed); err != nil {
		t.Fatal(err)
	}
	gitCLI("add", "-A")
	gitCLI("commit", "-q", "-m", "no tab")

	// A symbolic link is not followed: the run says so.
	if err := os.Symlink("../.sluice.yaml", filepath.Join(src.Dir, ".sluice", "link.yaml")); err != nil {
		t.Fatal(err)
	}
	src.Commit("a link\n")
	if run := h.trigger("multi", "main"); run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || run.FailureReason != ".sluice/link.yaml: a symbolic link; a pipeline file must be a file" {
		t.Errorf("a symbolic link in .sluice/: %s %q", run.Status, run.FailureReason)
	}
	src.Remove(".sluice/link.yaml")
	src.Commit("no link\n")

	// Without .sluice.yaml: the files of .sluice/ alone, their paths
	// filtering pushes as well.
	only, _ := newGitRepo(t, "only", "main", "")
	only.Write(".sluice/docs.yaml", "version: 1\nbuild:\n  steps:\n    - name: compile\n      run: mkdocs build\non:\n  push:\n    paths: [\"docs/**\"]\n")
	only.Commit("docs pipeline\n")
	onlyRepo := h.register(only.Dir)
	onlyPush := func(file string) webhookAnswer {
		t.Helper()
		sha := only.CommitFile(file, "x\n", "change\n")
		body := pushBody("refs/heads/main", sha)
		return h.hook("only", "push", "o-"+sha, sign(onlyRepo.WebhookSecret, body), body)
	}
	if a := onlyPush("README"); a.body["status"] != "ignored" {
		t.Errorf("a push outside docs/ with .sluice/docs.yaml alone: %v, want ignored", a.body)
	} else {
		mustContain(t, a.body["reason"], ".sluice/docs.yaml: the push changed no path matching the pipeline's on.push.paths (docs/**)")
	}
	if got := stepsOf(queued(onlyPush("docs/a.md")).Pipeline.GetBuild().GetSteps()); got != "docs/compile" {
		t.Errorf("a push to docs/ with .sluice/docs.yaml alone: %s", got)
	}
	many := map[string]string{}
	for i := range 21 {
		many[fmt.Sprintf(".sluice/p%02d.yaml", i)] = "version: 1\nbuild: {steps: [{name: a, run: x}]}\n"
	}
	only.CommitFiles("many\n", many)
	if run := h.trigger("only", "main"); run.Status != sourcev1.RunStatus_RUN_STATUS_FAILED || run.FailureReason != ".sluice: more than 20 pipeline files (*.yaml); at most 20" {
		t.Errorf("21 pipeline files: %s %q", run.Status, run.FailureReason)
	}

	runs := h.listRuns("multi")
	if !slices.ContainsFunc(runs, func(r *sourcev1.Run) bool { return r.Id == code.Id }) {
		t.Errorf("the runs of multi do not list %s", code.Id)
	}
}

// TestSeveralPipelinesSupersedeAndRerun: with cancel_superseded, a newer
// run supersedes an older one only when it holds every pipeline the older
// one does (a push only docs' pipeline wants leaves the run of src/ to
// finish, and a manual run, which holds them all, supersedes both); a
// rerun holds its run's pipelines.
func TestSeveralPipelinesSupersedeAndRerun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "super", "main", validPipeline+"on:\n  push:\n    paths: [\"src/**\"]\nconcurrency:\n  group: branch\n  cancel_superseded: true\n")
	src.Write(".sluice/docs.yaml", "version: 1\nbuild:\n  steps:\n    - name: compile\n      run: mkdocs build\non:\n  push:\n    paths: [\"docs/**\"]\n")
	src.Commit("docs pipeline\n")
	repo := h.register(src.Dir)
	push := func(file string) *sourcev1.Run {
		t.Helper()
		sha := src.CommitFile(file, file+"\n", "change "+file+"\n")
		body := pushBody("refs/heads/main", sha)
		a := h.hook("super", "push", "s-"+sha, sign(repo.WebhookSecret, body), body)
		if a.body["status"] != "queued" {
			t.Fatalf("push of %s: %v, want queued", file, a.body)
		}
		return h.getRun(a.body["run_id"])
	}
	code := push("src/a.go")
	h.waitRunEvent(subjectRunRequested, code.Id)
	docs := push("docs/a.md")
	if got := h.getRun(code.Id); got.Status != sourcev1.RunStatus_RUN_STATUS_QUEUED || got.CancelRequestedBy != "" {
		t.Errorf("the run of src/ after a run of docs' pipeline alone: %s, cancel asked by %q; want it left to go on", got.Status, got.CancelRequestedBy)
	}
	code2 := push("src/b.go")
	req := payload[*sourceeventsv1.RunCancelRequested](t, h.waitRunEvent(subjectRunCancelRequested, code.Id))
	if !strings.Contains(req.GetRequestedBy(), code2.Id) {
		t.Errorf("the run of src/ cancelled by %q, want the newer run of src/ %s", req.GetRequestedBy(), code2.Id)
	}
	if got := h.getRun(docs.Id); got.Status != sourcev1.RunStatus_RUN_STATUS_QUEUED {
		t.Errorf("the docs run after a newer run of src/: %s %q, want still queued", got.Status, got.FailureReason)
	}
	all := h.trigger("super", "main")
	for _, r := range []*sourcev1.Run{docs, code2} {
		ended := (&folding{h: h, run: r, ref: repoRef(r, repo.Url)}).waitStatus(sourcev1.RunStatus_RUN_STATUS_CANCELLED)
		if !strings.Contains(ended.GetFailureReason(), all.Id) {
			t.Errorf("waiting run %s: %q, want superseded by the manual run %s", r.Id, ended.GetFailureReason(), all.Id)
		}
	}

	res, err := h.client.RerunRun(context.Background(), &sourcev1.RerunRunRequest{RunId: docs.Id})
	if err != nil {
		t.Fatal(err)
	}
	if got := stepsOf(res.Run.Pipeline.GetBuild().GetSteps()); got != "docs/compile" || res.Run.Pipeline.GetTest() != nil || res.Run.Pipeline.GetRelease() != nil {
		t.Errorf("the rerun of the docs run: build %s, test %v, release %v; want docs's pipeline alone", got, res.Run.Pipeline.GetTest(), res.Run.Pipeline.GetRelease())
	}
}
