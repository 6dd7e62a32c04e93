package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"

	"github.com/sluicehq/sluice/e2e/internal/giteatest"
	"github.com/sluicehq/sluice/platform/gittest"
)

const forgePipeline = `version: 1
build:
  steps:
    - name: compile
      run: echo built
test:
  steps:
    - name: unit
      run: echo tested
`

// onGitea makes repository name on Gitea, its main branch holding the
// pipeline file, and registers it on Sluice with --forge gitea and the
// admin's token; Gitea's webhook of events is Sluice's, with its secret.
// It returns the local working copy.
func onGitea(t *testing.T, p *platform, g *giteatest.Server, client *gitea.Client, name, pipeline string, events ...string) *gittest.Repo {
	t.Helper()
	return onGiteaWith(t, p, g, client, name, pipeline, nil, events...)
}

// onGiteaWith is onGitea registering the repository with flags of sluice
// repo add besides the forge's.
func onGiteaWith(t *testing.T, p *platform, g *giteatest.Server, client *gitea.Client, name, pipeline string, flags []string, events ...string) *gittest.Repo {
	t.Helper()
	if _, _, err := client.CreateRepo(gitea.CreateRepoOption{Name: name, DefaultBranch: "main"}); err != nil {
		t.Fatalf("gitea: create a repository: %v", err)
	}
	repo := newGitRepo(t, map[string]string{".sluice.yaml": pipeline})
	g.Push(t, repo.Dir, name, "main")
	tokenFile := filepath.Join(t.TempDir(), "forge-token")
	if err := os.WriteFile(tokenFile, []byte(g.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustCLI(t, p.env, append([]string{"repo", "add", g.CloneURL(name), "--forge", "gitea", "--forge-token-file", tokenFile}, flags...)...)
	m := regexp.MustCompile(`webhook: POST (\S+/webhooks/gitea/` + name + `) with secret (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("repo add printed no gitea webhook:\n%s", out)
	}
	if strings.Contains(out, g.Token) {
		t.Fatal("repo add printed the forge token")
	}
	if _, _, err := client.CreateRepoHook(g.User, name, gitea.CreateHookOption{
		Type:   gitea.HookTypeGitea,
		Config: map[string]string{"url": m[1], "content_type": "json", "secret": m[2]},
		Events: events, Active: true,
	}); err != nil {
		t.Fatalf("gitea: create the webhook: %v", err)
	}
	return repo
}

// statusesOn reads the commit statuses Gitea shows for sha: the latest of
// each context.
func statusesOn(t *testing.T, c *gitea.Client, owner, repo, sha string) []*gitea.Status {
	t.Helper()
	combined, _, err := c.GetCombinedStatus(owner, repo, sha)
	if err != nil {
		t.Fatalf("gitea: the combined status of %s: %v", sha, err)
	}
	return combined.Statuses
}

// TestGiteaCommitStatuses: a repository on a real Gitea, registered with
// --forge gitea and a token, gets a run from Gitea's own push webhook (its
// X-Gitea-Signature checked), and Gitea shows the run's commit status as
// it goes: pending, then success, with the run's link; a pull request
// opened on Gitea runs its head, and Gitea shows that status too, and so
// for a push to it; closed while its run runs, it has the run cancelled,
// which Gitea shows; one opened while Sluice is down, its webhook lost, is run by the first poll
// after the restart (the reconciliation). It logs
// the time from the push to the pending status on Gitea, and from the
// run's end to the final status there.
func TestGiteaCommitStatuses(t *testing.T) {
	t.Parallel()
	g := giteatest.Start(t)
	client := g.Client(t)
	p, up := startAllInOne(t, t.TempDir(), "SLUICE_NOTIFY_RUN_URL=https://ci.example.com/runs/{run}")
	repo := onGitea(t, p, g, client, "hello", forgePipeline, "push", "pull_request")

	var toPending, endToFinal []time.Duration
	for i := range 5 {
		sha := repo.CommitFile("change.txt", strings.Repeat("x", i+1)+"\n", "change "+string(rune('a'+i))+"\n")
		pushed := time.Now()
		g.Push(t, repo.Dir, "hello", "main")

		seen, pendingAt, final, finalAt := waitFinalStatus(t, p, g, client, "hello", sha)
		if final.State != gitea.StatusSuccess || final.Context != "sluice" || !strings.HasPrefix(final.TargetURL, "https://ci.example.com/runs/") {
			t.Fatalf("push %d: final status %s %q %q %q; seen %v", i, final.State, final.Context, final.Description, final.TargetURL, seen)
		}
		if !strings.HasPrefix(seen[0], "pending") {
			t.Errorf("push %d: the first status gitea showed is %q, not pending (seen %v)", i, seen[0], seen)
		}
		runID := strings.TrimPrefix(final.TargetURL, "https://ci.example.com/runs/")
		var shown struct {
			Run struct {
				Trigger string `json:"trigger"`
				Commit  string `json:"commit"`
				EndTime string `json:"endTime"`
			} `json:"run"`
		}
		if err := json.Unmarshal([]byte(mustCLI(t, p.env, "show", runID, "--output", "json")), &shown); err != nil {
			t.Fatal(err)
		}
		run := shown.Run
		if run.Trigger != "TRIGGER_WEBHOOK" || run.Commit != sha {
			t.Errorf("push %d: run %s was made by %s for %s, want the webhook for %s", i, runID, run.Trigger, run.Commit, sha)
		}
		ended, err := time.Parse(time.RFC3339Nano, run.EndTime)
		if err != nil {
			t.Fatalf("run %s end time %q: %v", runID, run.EndTime, err)
		}
		toPending = append(toPending, pendingAt.Sub(pushed))
		endToFinal = append(endToFinal, finalAt.Sub(ended))
		t.Logf("push %d: statuses on gitea %v", i, seen)
	}
	t.Logf("push to pending status on gitea: %s; run end to final status on gitea: %s (the poll adds up to 20 ms)",
		durations(toPending), durations(endToFinal))

	// A pull request: its opening runs its head (the push of its branch
	// alone starts nothing: it is not the watched branch), Gitea shows the
	// status on the head, and `sluice runs --pr` lists the run.
	if out, code := cli(t, p.env, "runs", "hello", "--pr", "1"); code != 0 || strings.Count(out, "\n") != 1 {
		t.Fatalf("runs --pr 1 before the pull request: exit %d\n%s", code, out)
	}
	repo.SetRef("refs/heads/feature", repo.CommitFile("feature.txt", "f\n", "a feature\n"))
	head := repo.CommitFile("feature.txt", "f2\n", "the feature, finished\n")
	repo.SetRef("refs/heads/feature", head)
	g.Push(t, repo.Dir, "hello", head+":refs/heads/feature")
	pr, _, err := client.CreatePullRequest(g.User, "hello", gitea.CreatePullRequestOption{Head: "feature", Base: "main", Title: "a feature"})
	if err != nil {
		t.Fatalf("gitea: open a pull request: %v", err)
	}
	seen, _, final, _ := waitFinalStatus(t, p, g, client, "hello", head)
	if final.State != gitea.StatusSuccess {
		t.Fatalf("pull request #%d: final status %s %q; seen %v", pr.Index, final.State, final.Description, seen)
	}
	var prRuns struct {
		Runs []struct {
			Trigger     string `json:"trigger"`
			Commit      string `json:"commit"`
			Branch      string `json:"branch"`
			PullRequest string `json:"pullRequest"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, p.env, "runs", "hello", "--pr", strconv.FormatInt(pr.Index, 10), "--output", "json")), &prRuns); err != nil {
		t.Fatal(err)
	}
	if len(prRuns.Runs) != 1 || prRuns.Runs[0].Trigger != "TRIGGER_PULL_REQUEST" || prRuns.Runs[0].Commit != head ||
		prRuns.Runs[0].Branch != "pull/"+strconv.FormatInt(pr.Index, 10) {
		t.Errorf("runs of pull request #%d: %+v", pr.Index, prRuns.Runs)
	}
	t.Logf("pull request #%d: statuses on gitea %v", pr.Index, seen)

	// Pushed to, the pull request runs its new head.
	updated := repo.CommitFile("feature.txt", "f3\n", "the feature, reviewed\n")
	g.Push(t, repo.Dir, "hello", updated+":refs/heads/feature")
	if seen, _, final, _ := waitFinalStatus(t, p, g, client, "hello", updated); final.State != gitea.StatusSuccess {
		t.Fatalf("pull request #%d pushed to: final status %s %q; seen %v", pr.Index, final.State, final.Description, seen)
	}
	// Closed while its run runs, the pull request has the run cancelled,
	// and Gitea shows it.
	slow := repo.CommitFile(".sluice.yaml", strings.Replace(forgePipeline, "run: echo tested", "run: sleep 300", 1), "a slow test\n")
	g.Push(t, repo.Dir, "hello", slow+":refs/heads/feature")
	repo.CommitFile(".sluice.yaml", forgePipeline, "a quick test again\n") // for what follows
	waitStatus(t, p, g, client, "hello", slow, func(s *gitea.Status) bool { return s.Description == "test: running" })
	closed := gitea.StateClosed
	if _, _, err := client.EditPullRequest(g.User, "hello", pr.Index, gitea.EditPullRequestOption{State: &closed}); err != nil {
		t.Fatalf("gitea: close pull request #%d: %v", pr.Index, err)
	}
	if seen, _, final, _ := waitFinalStatus(t, p, g, client, "hello", slow); final.State != gitea.StatusError || final.Description != "cancelled" {
		t.Fatalf("pull request #%d closed: final status %s %q, want error \"cancelled\"; seen %v", pr.Index, final.State, final.Description, seen)
	}
	if out := mustCLI(t, p.env, "runs", "hello", "--pr", strconv.FormatInt(pr.Index, 10)); strings.Count(out, "\n") != 4 || !strings.Contains(out, "cancelled") {
		t.Errorf("runs of pull request #%d after it was pushed to and closed:\n%s", pr.Index, out)
	}

	// A pull request opened while Sluice is down: Gitea's webhook is lost.
	// The first poll after the restart asks Gitea for its open pull
	// requests and runs the one it missed.
	up.stop()
	repo.SetRef("refs/heads/second", repo.CommitFile("second.txt", "s\n", "a second feature\n"))
	second := repo.CommitFile("second.txt", "s2\n", "the second feature, finished\n")
	g.Push(t, repo.Dir, "hello", second+":refs/heads/second")
	missed, _, err := client.CreatePullRequest(g.User, "hello", gitea.CreatePullRequestOption{Head: "second", Base: "main", Title: "a second feature"})
	if err != nil {
		t.Fatalf("gitea: open a pull request: %v", err)
	}
	port, err := strconv.Atoi(p.url[strings.LastIndex(p.url, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	p.restartAllInOne(t, port, "--poll-interval", "2s")
	seen, _, final, _ = waitFinalStatus(t, p, g, client, "hello", second)
	if final.State != gitea.StatusSuccess {
		t.Fatalf("missed pull request #%d: final status %s %q; seen %v", missed.Index, final.State, final.Description, seen)
	}
	if out := mustCLI(t, p.env, "runs", "hello", "--pr", strconv.FormatInt(missed.Index, 10)); strings.Count(out, "\n") != 2 {
		t.Errorf("runs of the missed pull request #%d:\n%s", missed.Index, out)
	}
}

// waitFinalStatus polls Gitea's statuses of sha in repository name every
// 20 ms until one is final: it returns the states seen in order, when the
// first showed, and the final one with when it showed.
func waitFinalStatus(t *testing.T, p *platform, g *giteatest.Server, client *gitea.Client, name, sha string) ([]string, time.Time, *gitea.Status, time.Time) {
	t.Helper()
	return waitStatus(t, p, g, client, name, sha, func(s *gitea.Status) bool {
		return s.State == gitea.StatusSuccess || s.State == gitea.StatusFailure || s.State == gitea.StatusError
	})
}

// waitStatus is waitFinalStatus until done says a status is the one.
func waitStatus(t *testing.T, p *platform, g *giteatest.Server, client *gitea.Client, name, sha string, done func(*gitea.Status) bool) ([]string, time.Time, *gitea.Status, time.Time) {
	t.Helper()
	var seen []string
	var pendingAt time.Time
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no such status of %s on gitea within 3 minutes; seen %v\nsluice:\n%s\ngitea:\n%s", sha, seen, mustCLI(t, p.env, "runs", name), g.Log())
		}
		for _, s := range statusesOn(t, client, g.User, name, sha) {
			line := string(s.State) + " " + s.Description
			if !containsLine(seen, line) {
				seen = append(seen, line)
			}
			if pendingAt.IsZero() {
				pendingAt = time.Now()
			}
			if done(s) {
				return seen, pendingAt, s, time.Now()
			}
			break // one context: sluice
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsLine(lines []string, line string) bool {
	for _, l := range lines {
		if l == line {
			return true
		}
	}
	return false
}

// durations prints a sample's median and highest.
func durations(d []time.Duration) string {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return "median " + s[len(s)/2].Round(time.Millisecond).String() + ", highest " + s[len(s)-1].Round(time.Millisecond).String() + " of " + strconv.Itoa(len(s))
}

const rulesPipeline = forgePipeline + `on:
  push:
    branches: [main, "release/*"]
  tag: ["v*"]
  schedule:
    - cron: "* * * * *"
release:
  branches: [main]
  tags: ["v*"]
  environments:
    - name: staging
      deploy: echo deployed "$SLUICE_RELEASE_VERSION"
`

// TestGiteaBranchesAndTags: a pipeline whose on: section names release
// branches and v* tags runs, from Gitea's push webhooks, the pushes to a
// release branch and of a v* tag (its run on the tag's ref, released with
// the tag's version to staging, which the platform opens to refs/tags/v*),
// shows their statuses on Gitea, and runs nothing for another branch; its
// schedule (every minute) runs main's head, whose status Gitea shows. The
// repository makes its releases on Gitea: the tag's release shows there
// with its changelog, and a push to main makes a release whose tag Sluice
// makes there, and whose tag pushed back runs nothing.
func TestGiteaBranchesAndTags(t *testing.T) {
	t.Parallel()
	g := giteatest.Start(t)
	client := g.Client(t)
	p, _ := startAllInOne(t, t.TempDir(), "SLUICE_RELEASE_ENVIRONMENT_BRANCHES=staging=main|refs/tags/v*")
	repo := onGiteaWith(t, p, g, client, "rules", rulesPipeline, []string{"--forge-releases"}, "push")
	mainHead, err := repo.Git().Head()
	if err != nil {
		t.Fatal(err)
	}

	feature := repo.CommitFile("feature.txt", "f\n", "a feature\n")
	g.Push(t, repo.Dir, "rules", feature+":refs/heads/feature/x")
	release := repo.CommitFile("release.txt", "r\n", "release 1.0\n")
	g.Push(t, repo.Dir, "rules", release+":refs/heads/release/1.0")
	if seen, _, final, _ := waitFinalStatus(t, p, g, client, "rules", release); final.State != gitea.StatusSuccess {
		t.Fatalf("push to release/1.0: final status %s %q; seen %v", final.State, final.Description, seen)
	}

	repo.Tag("v1.0.0", release)
	g.Push(t, repo.Dir, "rules", "refs/tags/v1.0.0")
	type run struct {
		ID, Ref, Branch, Commit, Status, Trigger string
	}
	var runs struct{ Runs []run }
	deadline := time.Now().Add(3 * time.Minute)
	for tagRun := (run{}); tagRun.Status != "RUN_STATUS_SUCCEEDED"; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no succeeded run of tag v1.0.0 within 3 minutes: %+v\ngitea:\n%s", runs.Runs, g.Log())
		}
		runs.Runs = nil // a field protojson leaves out is not kept from before
		if err := json.Unmarshal([]byte(mustCLI(t, p.env, "runs", "rules", "--output", "json")), &runs); err != nil {
			t.Fatal(err)
		}
		for _, r := range runs.Runs {
			if r.Ref == "refs/tags/v1.0.0" {
				tagRun = r
			}
		}
		if tagRun.ID != "" && (tagRun.Commit != release || tagRun.Branch != "" || tagRun.Trigger != "TRIGGER_WEBHOOK") {
			t.Fatalf("run of tag v1.0.0: %+v, want the webhook's run of %s on no branch", tagRun, release)
		}
	}
	// The release branch's run and the tag's; the feature branch's push,
	// delivered before both, made none.
	var refs []string
	for _, r := range runs.Runs {
		if r.Trigger != "TRIGGER_SCHEDULE" {
			refs = append(refs, r.Ref)
		}
	}
	sort.Strings(refs)
	if want := []string{"refs/heads/release/1.0", "refs/tags/v1.0.0"}; strings.Join(refs, " ") != strings.Join(want, " ") {
		t.Errorf("runs of refs %v, want %v", refs, want)
	}
	if s := statusesOn(t, client, g.User, "rules", feature); len(s) != 0 {
		t.Errorf("gitea shows %d statuses on the feature branch's commit, want none", len(s))
	}
	// The tag's run made release v1.0.0 of its commit and deployed it.
	var releases struct {
		Releases []struct{ Version, Commit string }
	}
	if err := json.Unmarshal([]byte(mustCLI(t, p.env, "releases", "rules", "--output", "json")), &releases); err != nil {
		t.Fatal(err)
	}
	if len(releases.Releases) != 1 || releases.Releases[0].Version != "v1.0.0" || releases.Releases[0].Commit != release {
		t.Errorf("releases of rules: %+v, want v1.0.0 of %s", releases.Releases, release)
	}
	if out := mustCLI(t, p.env, "deployments", "rules"); !strings.Contains(out, "v1.0.0") || !strings.Contains(out, "staging") {
		t.Errorf("deployments of rules:\n%s", out)
	}

	// The schedule (every minute) runs main's head, which no push ran (it
	// was there when the repository was registered), and Gitea shows it.
	if seen, _, final, _ := waitFinalStatus(t, p, g, client, "rules", mainHead.Hash().String()); final.State != gitea.StatusSuccess {
		t.Fatalf("scheduled run of main: final status %s %q; seen %v", final.State, final.Description, seen)
	}
	runs.Runs = nil
	if err := json.Unmarshal([]byte(mustCLI(t, p.env, "runs", "rules", "--output", "json")), &runs); err != nil {
		t.Fatal(err)
	}
	scheduled := 0
	for _, r := range runs.Runs {
		if r.Trigger == "TRIGGER_SCHEDULE" && r.Branch == "main" && r.Commit == mainHead.Hash().String() {
			scheduled++
		}
	}
	if scheduled == 0 {
		t.Errorf("no scheduled run of main's head among %+v", runs.Runs)
	}

	// Gitea shows the tag's release, with its changelog.
	onGiteaRelease(t, g, client, "rules", "v1.0.0", release, "release 1.0")

	// A push to main is released with the next version: Sluice makes its
	// tag and release on Gitea.
	next := repo.CommitFile("b.txt", "b\n", "feat: b\n")
	pushed := time.Now()
	g.Push(t, repo.Dir, "rules", "main")
	if seen, _, final, _ := waitFinalStatus(t, p, g, client, "rules", next); final.State != gitea.StatusSuccess {
		t.Fatalf("push to main: final status %s %q; seen %v", final.State, final.Description, seen)
	}
	finalAfter := time.Since(pushed)
	version := ""
	deadline = time.Now().Add(time.Minute)
	for version == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no release of %s within a minute: %+v", next, releases.Releases)
		}
		releases.Releases = nil
		if err := json.Unmarshal([]byte(mustCLI(t, p.env, "releases", "rules", "--output", "json")), &releases); err != nil {
			t.Fatal(err)
		}
		for _, r := range releases.Releases {
			if r.Commit == next {
				version = r.Version
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	onGiteaRelease(t, g, client, "rules", version, next, "feat: b")
	t.Logf("figures: push to main → final status on gitea %v; → release %s and its tag seen on gitea %v (looked for after the final status)",
		finalAfter.Round(10*time.Millisecond), version, time.Since(pushed).Round(10*time.Millisecond))
	// The tag Sluice made, which Gitea tells of (its push webhooks come
	// within about 3 s of a push here), runs nothing: watched for 10 s.
	for quiet := time.Now().Add(10 * time.Second); time.Now().Before(quiet); time.Sleep(500 * time.Millisecond) {
		runs.Runs = nil
		if err := json.Unmarshal([]byte(mustCLI(t, p.env, "runs", "rules", "--output", "json")), &runs); err != nil {
			t.Fatal(err)
		}
		for _, r := range runs.Runs {
			if r.Ref == "refs/tags/"+version {
				t.Fatalf("the tag of release %s ran: %+v", version, r)
			}
		}
	}
}

// onGiteaRelease waits until Gitea shows the release of tag, with the tag
// at commit and notes that say changelog.
func onGiteaRelease(t *testing.T, g *giteatest.Server, client *gitea.Client, repo, tag, commit, changelog string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		rel, _, err := client.GetReleaseByTag(g.User, repo, tag)
		if err == nil {
			if rel.Title != tag || !strings.Contains(rel.Note, changelog) {
				t.Errorf("gitea's release %s: title %q, notes %q; want notes saying %q", tag, rel.Title, rel.Note, changelog)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gitea shows no release %s within a minute: %v\ngitea:\n%s", tag, err, g.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, _, err := client.GetTag(g.User, repo, tag)
	if err != nil || got.Commit == nil || got.Commit.SHA != commit {
		t.Errorf("gitea's tag %s: %+v %v, want it at %s", tag, got, err, commit)
	}
}

const docsPipeline = `version: 1
build:
  steps:
    - name: check
      run: test -e docs/index.md && echo "docs checked as $SLUICE_STEP"
test:
  steps:
    - name: unit
      run: echo links checked
on:
  push:
    paths: ["docs/**"]
`

// TestGiteaSeveralPipelines: a repository with .sluice.yaml (for src/)
// and .sluice/docs.yaml (for docs/) on Gitea: a push to docs/ runs the
// docs pipeline alone, its steps named docs/<step> in the run and its
// log, and Gitea shows the run's status; a push to src/ runs
// .sluice.yaml's; a push that both want holds the two pipelines, the same
// step name in each a step of its own.
func TestGiteaSeveralPipelines(t *testing.T) {
	t.Parallel()
	g := giteatest.Start(t)
	client := g.Client(t)
	p, _ := startAllInOne(t, t.TempDir())
	repo := onGitea(t, p, g, client, "multi", forgePipeline+"on:\n  push:\n    paths: [\"src/**\"]\n", "push")

	runOf := func(sha string) string {
		t.Helper()
		if seen, _, final, _ := waitFinalStatus(t, p, g, client, "multi", sha); final.State != gitea.StatusSuccess {
			t.Fatalf("push of %s: final status %s %q; seen %v", sha, final.State, final.Description, seen)
		}
		var runs struct{ Runs []struct{ ID, Commit string } }
		if err := json.Unmarshal([]byte(mustCLI(t, p.env, "runs", "multi", "--output", "json")), &runs); err != nil {
			t.Fatal(err)
		}
		for _, r := range runs.Runs {
			if r.Commit == sha {
				return r.ID
			}
		}
		t.Fatalf("no run of %s among %+v", sha, runs.Runs)
		return ""
	}
	hasSteps := func(runID string, want, not []string) {
		t.Helper()
		out := mustCLI(t, p.env, "show", runID)
		for _, w := range want {
			if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(w) + `\s`).MatchString(out) {
				t.Errorf("run %s lacks step %s:\n%s", runID, w, out)
			}
		}
		for _, n := range not {
			if regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(n) + `\s`).MatchString(out) {
				t.Errorf("run %s has step %s:\n%s", runID, n, out)
			}
		}
	}

	docs := repo.CommitFiles("docs\n", map[string]string{".sluice/docs.yaml": docsPipeline, "docs/index.md": "# docs\n"})
	g.Push(t, repo.Dir, "multi", "main")
	docsRun := runOf(docs)
	hasSteps(docsRun, []string{"docs/check", "docs/unit"}, []string{"compile", "unit"})
	if out := mustCLI(t, p.env, "logs", docsRun, "--step", "docs/check"); !strings.Contains(out, "docs checked as docs/check") {
		t.Errorf("the log of docs/check:\n%s", out)
	}

	src := repo.CommitFile("src/a.go", "package a\n", "src\n")
	g.Push(t, repo.Dir, "multi", "main")
	hasSteps(runOf(src), []string{"compile", "unit"}, []string{"docs/check", "docs/unit"})

	both := repo.CommitFiles("both\n", map[string]string{"src/b.go": "package a\n", "docs/b.md": "b\n"})
	g.Push(t, repo.Dir, "multi", "main")
	hasSteps(runOf(both), []string{"compile", "unit", "docs/check", "docs/unit"}, nil)
}
