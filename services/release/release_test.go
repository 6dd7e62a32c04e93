package release

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/egress"
	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"
)

func TestFirstReleaseDeploysAndVerifiesEveryEnvironment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commit := h.initialCommit()
	runID, fin := h.release(commit)

	if fin.GetVersion() != "v0.1.0" || fin.GetRolledBack() || fin.GetRepository().GetName() != repoName {
		t.Fatalf("ReleaseFinished = %v", fin)
	}
	published := eventsOf[*releaseeventsv1.ReleasePublished](h.events, runID)
	if len(published) != 1 {
		t.Fatalf("%d ReleasePublished, want 1", len(published))
	}
	rel := published[0].GetRelease()
	if rel.GetVersion() != "v0.1.0" || rel.GetCommit() != commit || rel.GetRunId() != runID {
		t.Fatalf("published release = %v", rel)
	}
	if want := "### Other\n\n- chore: initial import (" + commit[:7] + ")\n"; rel.GetChangelog() != want {
		t.Fatalf("changelog = %q, want %q", rel.GetChangelog(), want)
	}
	if len(rel.GetArtifacts()) != 1 || rel.GetArtifacts()[0].GetName() != "app" || rel.GetArtifacts()[0].GetObject() != runID+"/app" {
		t.Fatalf("artifacts = %v", rel.GetArtifacts())
	}
	if calls := h.source.listCommitsCalls(); len(calls) != 1 || calls[0].GetFrom() != "" || calls[0].GetTo() != commit {
		t.Fatalf("ListCommits calls = %v, want one from the root to %s", calls, commit)
	}

	// Both environments, in order, each deployed once and verified.
	deployed := eventsOf[*releaseeventsv1.ServiceDeployed](h.events, runID)
	var envs []string
	for _, d := range deployed {
		dep := d.GetDeployment()
		if dep.GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED || dep.GetVersion() != "v0.1.0" || dep.GetRollback() {
			t.Errorf("ServiceDeployed deployment = %v", dep)
		}
		envs = append(envs, dep.GetEnvironment())
	}
	if !slices.Equal(envs, []string{"staging", "production"}) {
		t.Fatalf("ServiceDeployed environments = %v, want staging then production", envs)
	}
	for _, env := range []string{"staging", "production"} {
		// The deploy ran with the environment's variables and the artifact,
		// whose bytes are the build's.
		if got, want := h.deploys(env), []string{"v0.1.0 " + env + " app hello-" + env}; !slices.Equal(got, want) {
			t.Errorf("%s deploys = %q, want %q", env, got, want)
		}
		if got := h.state(env, "app"); got != "#!/bin/sh\necho app built from "+commit+"\n" {
			t.Errorf("%s artifact = %q", env, got)
		}
		if got := strings.TrimSpace(h.state(env, "current")); got != "v0.1.0" {
			t.Errorf("%s runs %q, want v0.1.0", env, got)
		}
	}

	ctx := context.Background()
	rels, err := h.client.ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels.GetReleases()) != 1 || rels.GetReleases()[0].GetStatus() != releasev1.ReleaseStatus_RELEASE_STATUS_DEPLOYED {
		t.Fatalf("ListReleases = %v, want v0.1.0 DEPLOYED", rels.GetReleases())
	}
	deps, err := h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if got := deploymentSummary(deps.GetDeployments()); !slices.Equal(got, []string{"production v0.1.0 VERIFIED", "staging v0.1.0 VERIFIED"}) {
		t.Fatalf("ListDeployments = %q (newest first)", got)
	}
	if d := deps.GetDeployments()[0]; d.GetRunId() != runID || d.GetEndTime() == nil || d.GetCreateTime() == nil {
		t.Fatalf("deployment = %v", d)
	}
}

func TestFeatureCommitBumpsMinorWithChangelog(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	first := h.initialCommit()
	h.release(first)
	fix := h.repo.CommitFiles("fix: greet politely", map[string]string{"greeting": "hello\n"})
	feat := h.repo.CommitFiles("feat(api): greet users\n\nA longer body.", map[string]string{"greeting": "hello users\n"})
	runID, fin := h.release(feat)

	if fin.GetVersion() != "v0.2.0" {
		t.Fatalf("version = %s, want v0.2.0", fin.GetVersion())
	}
	rel := eventsOf[*releaseeventsv1.ReleasePublished](h.events, runID)[0].GetRelease()
	want := "### Features\n\n- feat(api): greet users (" + feat[:7] + ")\n\n### Fixes\n\n- fix: greet politely (" + fix[:7] + ")\n"
	if rel.GetChangelog() != want {
		t.Fatalf("changelog =\n%s\nwant\n%s", rel.GetChangelog(), want)
	}
	calls := h.source.listCommitsCalls()
	if last := calls[len(calls)-1]; last.GetFrom() != first || last.GetTo() != feat {
		t.Fatalf("ListCommits from %s to %s, want from the previous release's commit %s to %s", last.GetFrom(), last.GetTo(), first, feat)
	}
	if got := strings.TrimSpace(h.state("production", "current")); got != "v0.2.0" {
		t.Fatalf("production runs %s, want v0.2.0", got)
	}
	rels, err := h.client.ListReleases(context.Background(), &releasev1.ListReleasesRequest{Repository: repoName, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels.GetReleases()) != 1 || rels.GetReleases()[0].GetVersion() != "v0.2.0" {
		t.Fatalf("ListReleases(limit 1) = %v, want the newest, v0.2.0", rels.GetReleases())
	}
}

func TestFailedVerificationMarksReleaseBadAndRollsBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	good := h.initialCommit()
	h.release(good)
	bad := h.repo.CommitFiles("fix: tune the health check", map[string]string{"health": "broken\n"})
	runID := h.run(bad, "main", h.pipeline())
	fin := h.finished(runID)

	wantReason := "verification failed on staging: GET " + h.health.URL + "/staging: 503 Service Unavailable after 1s; rolled back staging to v0.1.0"
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || !fin.GetRolledBack() ||
		fin.GetVersion() != "v0.1.1" || fin.GetReason() != wantReason {
		t.Fatalf("ReleaseFinished = %v\nwant FAILED, v0.1.1, rolled back, reason %q", fin, wantReason)
	}
	failed := eventsOf[*releaseeventsv1.DeploymentFailed](h.events, runID)
	if len(failed) != 1 {
		t.Fatalf("%d DeploymentFailed, want 1", len(failed))
	}
	if d := failed[0].GetDeployment(); d.GetEnvironment() != "staging" || d.GetVersion() != "v0.1.1" ||
		d.GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_FAILED ||
		d.GetReason() != "verification failed: GET "+h.health.URL+"/staging: 503 Service Unavailable after 1s" {
		t.Fatalf("failed deployment = %v", d)
	}
	rolled := eventsOf[*releaseeventsv1.ServiceRolledBack](h.events, runID)
	if len(rolled) != 1 {
		t.Fatalf("%d ServiceRolledBack, want 1", len(rolled))
	}
	if r := rolled[0]; r.GetEnvironment() != "staging" || r.GetFromVersion() != "v0.1.1" || r.GetToVersion() != "v0.1.0" ||
		!r.GetDeployment().GetRollback() || r.GetDeployment().GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED ||
		!strings.HasPrefix(r.GetReason(), "verification failed on staging") {
		t.Fatalf("ServiceRolledBack = %v", r)
	}
	if n := len(eventsOf[*releaseeventsv1.ServiceDeployed](h.events, runID)); n != 0 {
		t.Fatalf("%d ServiceDeployed for the bad release, want 0", n)
	}

	// The deploy script ran again with v0.1.0 and its own commit (healthy).
	if got, want := h.deploys("staging"), []string{
		"v0.1.0 staging app hello-staging", "v0.1.1 staging app hello-staging", "v0.1.0 staging app hello-staging",
	}; !slices.Equal(got, want) {
		t.Fatalf("staging deploys = %q, want %q", got, want)
	}
	if got := strings.TrimSpace(h.state("staging", "current")); got != "v0.1.0" {
		t.Fatalf("staging runs %s, want v0.1.0", got)
	}
	if got := strings.TrimSpace(h.state("staging", "health")); got != "ok" {
		t.Fatalf("staging health %q, want ok (v0.1.0's commit)", got)
	}
	// Production was not touched.
	if got := h.deploys("production"); !slices.Equal(got, []string{"v0.1.0 production app hello-production"}) {
		t.Fatalf("production deploys = %q", got)
	}

	ctx := context.Background()
	rels, err := h.client.ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]releasev1.ReleaseStatus{}
	for _, r := range rels.GetReleases() {
		statuses[r.GetVersion()] = r.GetStatus()
	}
	if statuses["v0.1.1"] != releasev1.ReleaseStatus_RELEASE_STATUS_BAD || statuses["v0.1.0"] != releasev1.ReleaseStatus_RELEASE_STATUS_DEPLOYED {
		t.Fatalf("release statuses = %v, want v0.1.1 BAD and v0.1.0 DEPLOYED", statuses)
	}
	deps, err := h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: repoName, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if got := deploymentSummary(deps.GetDeployments()); !slices.Equal(got, []string{
		"staging v0.1.0 VERIFIED rollback", "staging v0.1.1 FAILED", "staging v0.1.0 VERIFIED",
	}) {
		t.Fatalf("staging deployments = %q", got)
	}

	// A bad release is never a rollback target.
	_, err = h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.1.1"})
	wantCode(t, err, connect.CodeFailedPrecondition, "release v0.1.1 of \"app\" is bad")

	// The next good release goes on from the bad one's version.
	fixed := h.repo.CommitFiles("fix: restore the health check", map[string]string{"health": "ok\n"})
	_, fin = h.release(fixed)
	if fin.GetVersion() != "v0.1.2" {
		t.Fatalf("version after the bad release = %s, want v0.1.2", fin.GetVersion())
	}
}

func TestFailedFirstDeployHasNothingToRollBackTo(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commit := h.repo.CommitFiles("feat: first", map[string]string{"deploy.sh": "echo deploying; exit 3\n", "health": "ok\n"})
	runID := h.run(commit, "main", h.pipeline())
	fin := h.finished(runID)
	want := "deploy exited with code 3 on staging; no earlier verified release of staging to roll back to\n" +
		"last lines of deploy:staging:\n| deploying"
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || fin.GetRolledBack() || fin.GetReason() != want {
		t.Fatalf("ReleaseFinished = %v, want FAILED, not rolled back, %q", fin, want)
	}
	if n := len(eventsOf[*releaseeventsv1.ServiceRolledBack](h.events, runID)); n != 0 {
		t.Fatalf("%d ServiceRolledBack, want 0", n)
	}
	deps, err := h.client.ListDeployments(context.Background(), &releasev1.ListDeploymentsRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if got := deploymentSummary(deps.GetDeployments()); !slices.Equal(got, []string{"staging v0.1.0 FAILED"}) {
		t.Fatalf("deployments = %q, want only the failed staging one", got)
	}
	// The deployment keeps the failing step and its last lines; the whole
	// output is the run's release log.
	if d := deps.GetDeployments()[0]; d.GetReason() != "deploy exited with code 3" || d.GetFailedStep() != "deploy:staging" ||
		!slices.Equal(d.GetLastLogLines(), []string{"deploying"}) {
		t.Fatalf("failed deployment = %v", d)
	}
	lines, _ := h.logs(runID, "deploy")
	if len(lines) < 3 || lines[len(lines)-2] != "[deploy:staging] deploying" || lines[len(lines)-1] != "--- deploy exited with code 3" {
		t.Fatalf("deploy log:\n%s", strings.Join(lines, "\n"))
	}
}

func TestFailedRollbackIsReported(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	h.healthDown.Store(true) // staging is down whatever runs there
	runID := h.run(h.repo.CommitFiles("fix: anything", map[string]string{"greeting": "x\n"}), "main", h.pipeline())
	fin := h.finished(runID)
	verifyFailed := "verification failed: GET " + h.health.URL + "/staging: 503 Service Unavailable after 1s"
	want := "verification failed on staging: GET " + h.health.URL + "/staging: 503 Service Unavailable after 1s" +
		"; rolling back staging to v0.1.0 failed: " + verifyFailed
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || fin.GetRolledBack() || fin.GetReason() != want {
		t.Fatalf("ReleaseFinished = %v\nwant FAILED, not rolled back, %q", fin, want)
	}
	if n := len(eventsOf[*releaseeventsv1.ServiceRolledBack](h.events, runID)); n != 0 {
		t.Fatalf("%d ServiceRolledBack for a failed rollback, want 0", n)
	}
	failed := eventsOf[*releaseeventsv1.DeploymentFailed](h.events, runID)
	if len(failed) != 2 || failed[0].GetDeployment().GetRollback() || !failed[1].GetDeployment().GetRollback() ||
		failed[1].GetDeployment().GetVersion() != "v0.1.0" {
		t.Fatalf("DeploymentFailed = %v, want the deploy then the rollback", failed)
	}
	if got := h.deploys("staging"); len(got) != 3 {
		t.Fatalf("staging deploys = %q, want v0.1.0, v0.1.1, v0.1.0", got)
	}
}

func TestArtifactChecksumMismatchFailsWithoutTouchingTheEnvironment(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	commit := h.repo.CommitFiles("fix: anything", map[string]string{"greeting": "x\n"})
	runID := h.runWithSHA(commit, "main", h.pipeline(), strings.Repeat("0", 64))
	fin := h.finished(runID)
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || fin.GetRolledBack() ||
		!strings.HasPrefix(fin.GetReason(), `preparing the deploy failed on staging: artifact "app": content does not match the build's record: sha256 is `) ||
		!strings.HasSuffix(fin.GetReason(), "the build recorded "+strings.Repeat("0", 64)+"; staging was not changed") {
		t.Fatalf("ReleaseFinished = %v", fin)
	}
	if got := h.deploys("staging"); len(got) != 1 {
		t.Fatalf("staging deploys = %q, want only v0.1.0's", got)
	}
	// Nothing was deployed, so the release is not known to be bad.
	rels, err := h.client.ListReleases(context.Background(), &releasev1.ListReleasesRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if s := rels.GetReleases()[0]; s.GetVersion() != "v0.1.1" || s.GetStatus() != releasev1.ReleaseStatus_RELEASE_STATUS_PUBLISHED {
		t.Fatalf("release = %v, want v0.1.1 PUBLISHED", s)
	}
}

func TestNonReleaseBranchIsSkipped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commit := h.initialCommit()
	// A failed test run is not released at all: no event.
	failedRun := "run-with-failed-tests"
	h.publishTestRun(failedRun, commit, "main", testv1.TestRunStatus_TEST_RUN_STATUS_FAILED)
	runID := h.run(commit, "feature", h.pipeline())
	fin := h.finished(runID)
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED ||
		fin.GetReason() != `branch "feature" is not a release branch (main)` || fin.GetVersion() != "" {
		t.Fatalf("ReleaseFinished = %v", fin)
	}
	// A pipeline without a release section is skipped too.
	noRelease := h.run(commit, "main", &sourcev1.Pipeline{})
	if fin := h.finished(noRelease); fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED ||
		fin.GetReason() != "the pipeline has no release section" {
		t.Fatalf("ReleaseFinished = %v", fin)
	}
	h.waitConsumed(3)
	if evs := eventsOf[*releaseeventsv1.ReleaseFinished](h.events, failedRun); len(evs) != 0 {
		t.Fatalf("release events for a run whose tests failed: %v", evs)
	}
	rels, err := h.client.ListReleases(context.Background(), &releasev1.ListReleasesRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels.GetReleases()) != 0 {
		t.Fatalf("releases = %v, want none", rels.GetReleases())
	}
	if _, err := os.Stat(filepath.Join(h.cfg.DataDir, "state")); !os.IsNotExist(err) {
		t.Fatalf("something was deployed: %v", err)
	}
}

func TestDuplicateTestRunFinishedReleasesAndDeploysOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commit := h.initialCommit()
	// Production's deploy is slow, so that the duplicate has staging to
	// itself while the first is in production: each would write the run's
	// log, were it not for the run's lock.
	pipeline := h.pipeline()
	pipeline.Release.Environments[1].Deploy = `echo started > "$SLUICE_STATE_DIR/started" && sleep 1 && sh deploy.sh`
	runID := h.run(commit, "main", pipeline)
	// The same run again, as another event, once the first deploys to
	// production: the two are handled at once.
	h.waitForLines("production", "started", 1)
	h.publishTestRun(runID, commit, "main", testv1.TestRunStatus_TEST_RUN_STATUS_PASSED)
	if fin := h.finished(runID); fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED {
		t.Fatalf("ReleaseFinished = %v", fin)
	}
	// And once more after the stage finished.
	h.publishTestRun(runID, commit, "main", testv1.TestRunStatus_TEST_RUN_STATUS_PASSED)
	h.waitConsumed(3)

	if n := len(eventsOf[*releaseeventsv1.ReleasePublished](h.events, runID)); n != 1 {
		t.Errorf("%d ReleasePublished, want 1", n)
	}
	if n := len(eventsOf[*releaseeventsv1.ServiceDeployed](h.events, runID)); n != 2 {
		t.Errorf("%d ServiceDeployed, want 2 (staging, production)", n)
	}
	if n := len(eventsOf[*releaseeventsv1.ReleaseFinished](h.events, runID)); n != 1 {
		t.Errorf("%d ReleaseFinished, want 1", n)
	}
	for _, env := range []string{"staging", "production"} {
		if got := h.deploys(env); len(got) != 1 {
			t.Errorf("%s deploy ran %d times: %q", env, len(got), got)
		}
	}
	lines, _ := h.logs(runID, "")
	for _, l := range lines {
		if strings.Contains(l, "earlier writer") {
			t.Errorf("the duplicate took the run's log over from the first handler: %s", l)
		}
	}
	if !slices.Contains(lines, "--- verified v0.1.0 in production") {
		t.Errorf("the log lacks production's verdict:\n%s", strings.Join(lines, "\n"))
	}
	rels, err := h.client.ListReleases(context.Background(), &releasev1.ListReleasesRequest{Repository: repoName})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels.GetReleases()) != 1 {
		t.Fatalf("%d releases, want 1", len(rels.GetReleases()))
	}

	// A new run of the same commit keeps its version and deploys nothing:
	// every environment runs that commit already.
	again := h.run(commit, "main", h.pipeline())
	fin := h.finished(again)
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED || fin.GetVersion() != "v0.1.0" ||
		fin.GetReason() != "staging already runs v0.1.0; production already runs v0.1.0" {
		t.Fatalf("re-run of a released commit: %v, want SKIPPED, v0.1.0, already running", fin)
	}
	if n := len(eventsOf[*releaseeventsv1.ReleasePublished](h.events, again)); n != 0 {
		t.Fatalf("re-run published the release again")
	}
	if got := h.deploys("staging"); len(got) != 1 {
		t.Fatalf("staging deploys after a re-run = %q, want 1", got)
	}
}

// Runs finish out of order: an older commit whose tests pass after a newer
// commit was released gets no version (none higher than the newer's, as
// the demo's first commit once got) and deploys nothing; versions follow
// ancestry after it.
func TestOlderCommitFinishingLateIsNotReleased(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit()) // v0.1.0
	older := h.repo.CommitFiles("fix: one", map[string]string{"greeting": "a\n"})
	newer := h.repo.CommitFiles("feat: two", map[string]string{"greeting": "b\n"})
	if _, fin := h.release(newer); fin.GetVersion() != "v0.2.0" {
		t.Fatalf("newer released as %s, want v0.2.0", fin.GetVersion())
	}

	late := h.run(older, "main", h.pipeline())
	fin := h.finished(late)
	want := "commit " + older[:7] + " is older than release v0.2.0 (commit " + newer[:7] + "), which contains it: no version is made for it and nothing is deployed"
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED || fin.GetVersion() != "" || fin.GetReason() != want {
		t.Fatalf("late older run: %v, want SKIPPED without a version: %q", fin, want)
	}
	if n := len(eventsOf[*releaseeventsv1.ReleasePublished](h.events, late)); n != 0 {
		t.Fatalf("the older commit was released")
	}
	for _, env := range []string{"staging", "production"} {
		if got := strings.TrimSpace(h.state(env, "current")); got != "v0.2.0" {
			t.Errorf("%s runs %s, want v0.2.0", env, got)
		}
		if got := h.deploys(env); len(got) != 2 {
			t.Errorf("%s deploys = %q, want v0.1.0 and v0.2.0 only", env, got)
		}
	}

	// The next commit's version follows v0.2.0, its ancestor.
	next := h.repo.CommitFiles("fix: three", map[string]string{"greeting": "c\n"})
	if _, fin := h.release(next); fin.GetVersion() != "v0.2.1" {
		t.Fatalf("next release = %s, want v0.2.1", fin.GetVersion())
	}
}

// The same, when the older commit's release was made before the newer's
// but reaches an environment after the newer was verified there: checked
// under the environment's lock, it is not deployed over the newer.
func TestOlderReleaseReachingAnEnvironmentLateIsNotDeployedThere(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit()) // v0.1.0
	older := h.repo.CommitFiles("fix: one", map[string]string{"greeting": "a\n"})
	newer := h.repo.CommitFiles("feat: two", map[string]string{"greeting": "b\n"})

	// The older run deploys to "gate" first, which waits for the test.
	gated := h.pipeline()
	gated.Release.Environments = append([]*sourcev1.EnvironmentSpec{{
		Name:   "gate",
		Deploy: `i=0; while [ ! -e "$SLUICE_STATE_DIR/proceed" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; sh deploy.sh`,
		Env:    map[string]string{"GREETING": "hello-gate"},
	}}, gated.Release.Environments[1]) // gate, production
	lateRun := h.run(older, "main", gated)
	published := waitEvent(t, h.events, func(p *releaseeventsv1.ReleasePublished) bool { return p.GetRunId() == lateRun })
	if v := published.GetRelease().GetVersion(); v != "v0.1.1" {
		t.Fatalf("older released as %s, want v0.1.1", v)
	}

	// Meanwhile the newer commit is released (after v0.1.1, its ancestor)
	// and verified in production.
	newerRun := h.run(newer, "main", &sourcev1.Pipeline{Release: &sourcev1.ReleaseSpec{
		Branches: []string{"main"}, Environments: h.pipeline().Release.Environments[1:],
	}})
	if fin := h.finished(newerRun); fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED || fin.GetVersion() != "v0.2.0" {
		t.Fatalf("newer: %v, want SUCCEEDED v0.2.0", fin)
	}

	if err := os.WriteFile(filepath.Join(StateDir(h.cfg.DataDir, repoName, "gate"), "proceed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fin := h.finished(lateRun)
	want := "production runs v0.2.0 (commit " + newer[:7] + "), which contains v0.1.1 (commit " + older[:7] + ")"
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED || fin.GetVersion() != "v0.1.1" || fin.GetReason() != want {
		t.Fatalf("older run: %v, want SUCCEEDED (gate) with %q", fin, want)
	}
	if got := strings.TrimSpace(h.state("production", "current")); got != "v0.2.0" {
		t.Fatalf("production runs %s, want v0.2.0", got)
	}
	if got := h.deploys("production"); !slices.Equal(got, []string{"v0.1.0 production app hello-production", "v0.2.0 production app hello-production"}) {
		t.Fatalf("production deploys = %q, want v0.1.0 then v0.2.0 only", got)
	}
	lines, _ := h.logs(lateRun, "deploy:production")
	if len(lines) != 1 || lines[0] != "--- not deploying v0.1.1 to production: "+want {
		t.Fatalf("production log of the older run = %q", lines)
	}
}

// Which branches deploy where is the platform's to say: a branch whose
// .sluice.yaml lists itself as a release branch deploys only where the
// environment-branches setting lets it, so it cannot add itself to
// production.
func TestBranchListingItselfIsNotDeployedWhereThePlatformForbids(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.EnvironmentBranches = "staging=main|feature/*" }) // production: main|master
	h.release(h.initialCommit())                                                             // v0.1.0 everywhere

	pipeline := h.pipeline()
	pipeline.Release.Branches = []string{"main", "feature/x"}
	feature := h.repo.CommitFiles("fix: on a branch", map[string]string{"greeting": "x\n"})
	runID := h.run(feature, "feature/x", pipeline)
	fin := h.finished(runID)
	want := `the platform's environment-branches setting does not let branch "feature/x" deploy automatically to production (allowed there: main|master)`
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED || fin.GetVersion() != "v0.1.1" || fin.GetReason() != want {
		t.Fatalf("feature run: %v, want SUCCEEDED v0.1.1 in staging only: %q", fin, want)
	}
	if got := strings.TrimSpace(h.state("staging", "current")); got != "v0.1.1" {
		t.Errorf("staging runs %s, want v0.1.1", got)
	}
	if got := h.deploys("production"); len(got) != 1 {
		t.Errorf("production deploys = %q, want only v0.1.0's", got)
	}

	// A branch that no environment allows: nothing is released.
	pipeline.Release.Branches = []string{"hack"}
	hack := h.repo.CommitFiles("feat: mine", map[string]string{"greeting": "y\n"})
	runID = h.run(hack, "hack", pipeline)
	fin = h.finished(runID)
	want = `the platform's environment-branches setting does not let branch "hack" deploy automatically to staging (allowed there: main|feature/*), production (allowed there: main|master)`
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED || fin.GetVersion() != "" || fin.GetReason() != want {
		t.Fatalf("hack run: %v, want SKIPPED: %q", fin, want)
	}
	if n := len(eventsOf[*releaseeventsv1.ReleasePublished](h.events, runID)); n != 0 {
		t.Fatalf("a branch no environment allows was released")
	}
	if got := strings.TrimSpace(h.state("production", "current")); got != "v0.1.0" {
		t.Fatalf("production runs %s, want v0.1.0", got)
	}
}

func TestInterruptedDeployIsFailedNotRerunAndRolledBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	good := h.initialCommit()
	h.release(good)
	// This commit's deploy hangs until the service is stopped.
	slow := h.repo.CommitFiles("feat: slow deploy", map[string]string{
		"deploy.sh": `echo "$SLUICE_RELEASE_VERSION" >> "$SLUICE_STATE_DIR/hung"; sleep 60` + "\n",
	})
	runID := h.run(slow, "main", h.pipeline())
	h.waitForLines("staging", "hung", 1)
	h.proc.Stop() // the "crash": the deploy is killed mid-way
	if n := len(eventsOf[*releaseeventsv1.ReleaseFinished](h.events, runID)); n != 0 {
		t.Fatalf("release finished although it was interrupted")
	}

	h.start() // the event is redelivered to the new process
	fin := h.finished(runID)
	want := "interrupted on staging: the release service stopped during the deploy; rolled back staging to v0.1.0"
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || !fin.GetRolledBack() || fin.GetReason() != want {
		t.Fatalf("ReleaseFinished = %v, want FAILED, rolled back, %q", fin, want)
	}
	if got := strings.TrimSpace(h.state("staging", "hung")); got != "v0.2.0" {
		t.Fatalf("the interrupted deploy ran %q times, want once (v0.2.0)", got)
	}
	if got := strings.TrimSpace(h.state("staging", "current")); got != "v0.1.0" {
		t.Fatalf("staging runs %s, want v0.1.0", got)
	}
	failed := eventsOf[*releaseeventsv1.DeploymentFailed](h.events, runID)
	if len(failed) != 1 || failed[0].GetDeployment().GetReason() != "interrupted: the release service stopped during the deploy" {
		t.Fatalf("DeploymentFailed = %v", failed)
	}
}

// An environment whose pipeline says on_interrupt: redeploy has its
// interrupted deploy run again by the next delivery, which then succeeds:
// nothing is rolled back, and the deployment says it took two starts.
func TestInterruptedDeployIsRunAgainWhenItsEnvironmentSaysRedeploy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	// The first start in staging hangs until the service is stopped; the
	// second deploys. ($SLUICE_STATE_DIR keeps the count: a stopped deploy's
	// state is stored.)
	slow := h.repo.CommitFiles("feat: slow first deploy", map[string]string{
		"deploy.sh": `n=$(($(cat "$SLUICE_STATE_DIR/starts" 2>/dev/null || echo 0) + 1))
echo "$n" > "$SLUICE_STATE_DIR/starts"
echo "$SLUICE_RELEASE_VERSION" >> "$SLUICE_STATE_DIR/hung"
if [ "$SLUICE_ENVIRONMENT" = staging ] && [ "$n" = 1 ]; then sleep 60; fi
` + deployScript,
	})
	pipeline := h.pipeline()
	pipeline.Release.Environments[0].OnInterrupt = sourcev1.OnInterrupt_ON_INTERRUPT_REDEPLOY
	runID := h.run(slow, "main", pipeline)
	h.waitForLines("staging", "hung", 1)
	h.proc.Stop()

	h.start()
	fin := h.finished(runID)
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED || fin.GetVersion() != "v0.2.0" || fin.GetRolledBack() {
		t.Fatalf("ReleaseFinished = %v, want SUCCEEDED v0.2.0", fin)
	}
	if got := strings.Fields(h.state("staging", "hung")); !slices.Equal(got, []string{"v0.2.0", "v0.2.0"}) {
		t.Fatalf("staging's deploy ran for %q, want v0.2.0 twice", got)
	}
	if got := strings.TrimSpace(h.state("production", "current")); got != "v0.2.0" {
		t.Fatalf("production runs %s, want v0.2.0", got)
	}
	deployed := eventsOf[*releaseeventsv1.ServiceDeployed](h.events, runID)
	if len(deployed) != 2 || deployed[0].GetDeployment().GetAttempts() != 2 || deployed[1].GetDeployment().GetAttempts() != 1 {
		t.Fatalf("ServiceDeployed = %v, want staging after 2 starts, production after 1", deployed)
	}
	if n := len(eventsOf[*releaseeventsv1.DeploymentFailed](h.events, runID)); n != 0 {
		t.Fatalf("%d deployments failed", n)
	}
	lines, _ := h.logs(runID, "deploy:staging")
	want := "--- the deploy of v0.2.0 to staging was interrupted after its command started (the release service stopped or lost the environment's lock); running it again as its on_interrupt says (redeploy: start 2 of at most 3)"
	if !slices.Contains(lines, want) {
		t.Fatalf("the staging deploy's log does not say it ran again:\n%s", strings.Join(lines, "\n"))
	}
}

func TestRollbackRPC(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	h.release(h.repo.CommitFiles("feat: greet", map[string]string{"greeting": "hi\n"}))
	ctx := context.Background()

	res, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	d := res.GetDeployment()
	if d.GetVersion() != "v0.1.0" || !d.GetRollback() || d.GetStatus() != releasev1.DeploymentStatus_DEPLOYMENT_STATUS_VERIFIED || d.GetRunId() != "" {
		t.Fatalf("rollback deployment = %v", d)
	}
	if got := strings.TrimSpace(h.state("staging", "current")); got != "v0.1.0" {
		t.Fatalf("staging runs %s, want v0.1.0", got)
	}
	if got := strings.TrimSpace(h.state("production", "current")); got != "v0.2.0" {
		t.Fatalf("production runs %s, want v0.2.0 (untouched)", got)
	}
	ev := waitEvent(t, h.events, func(r *releaseeventsv1.ServiceRolledBack) bool { return r.GetDeployment().GetId() == d.GetId() })
	if ev.GetFromVersion() != "v0.2.0" || ev.GetToVersion() != "v0.1.0" || ev.GetEnvironment() != "staging" {
		t.Fatalf("ServiceRolledBack = %v", ev)
	}
	deps, err := h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: repoName, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if got := deploymentSummary(deps.GetDeployments()); !slices.Equal(got, []string{
		"staging v0.1.0 VERIFIED rollback", "staging v0.2.0 ROLLED_BACK", "staging v0.1.0 VERIFIED",
	}) {
		t.Fatalf("staging deployments = %q", got)
	}

	// Nothing verified before v0.1.0: no default target left.
	_, err = h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging"})
	wantCode(t, err, connect.CodeFailedPrecondition, "nothing to roll back to")
	// An explicit version may go forward again.
	res, err = h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.2.0"})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetDeployment().GetVersion() != "v0.2.0" || strings.TrimSpace(h.state("staging", "current")) != "v0.2.0" {
		t.Fatalf("rollback to v0.2.0 = %v", res.GetDeployment())
	}
	_, err = h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.2.0"})
	wantCode(t, err, connect.CodeFailedPrecondition, "v0.2.0 already runs")

	for _, tt := range []struct {
		name string
		req  *releasev1.RollbackRequest
		code connect.Code
		msg  string
	}{
		{"bad version", &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "1.0"}, connect.CodeInvalidArgument, "must be a version like v1.2.3"},
		{"no repository", &releasev1.RollbackRequest{Environment: "staging"}, connect.CodeInvalidArgument, "repository"},
		{"no environment", &releasev1.RollbackRequest{Repository: repoName}, connect.CodeInvalidArgument, "environment"},
		{"unknown repository", &releasev1.RollbackRequest{Repository: "nope", Environment: "staging"}, connect.CodeNotFound, `repository "nope"`},
		{"unknown environment", &releasev1.RollbackRequest{Repository: repoName, Environment: "qa"}, connect.CodeNotFound, `environment "qa"`},
		{"unknown version", &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v9.9.9"}, connect.CodeNotFound, "release v9.9.9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := h.client.Rollback(ctx, tt.req)
			wantCode(t, err, tt.code, tt.msg)
		})
	}
	_, err = h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: repoName, Limit: -1})
	wantCode(t, err, connect.CodeInvalidArgument, "limit")
}

func wantCode(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	if connect.CodeOf(err) != code || !strings.Contains(err.Error(), msg) {
		t.Fatalf("error = %v, want %v containing %q", err, code, msg)
	}
}

func deploymentSummary(ds []*releasev1.Deployment) []string {
	var out []string
	for _, d := range ds {
		s := d.GetEnvironment() + " " + d.GetVersion() + " " + strings.TrimPrefix(d.GetStatus().String(), "DEPLOYMENT_STATUS_")
		if d.GetRollback() {
			s += " rollback"
		}
		out = append(out, s)
	}
	return out
}

// Without allow-egress loopback, verify.http against the loopback health
// endpoint fails the verification at once with the refusal, which names
// the setting; without allow-egress local, the local repository is not
// checked out and the environment is not touched.
func TestEgressRefusalsFailTheDeploy(t *testing.T) {
	t.Parallel()
	t.Run("verify.http on loopback", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *Config) { c.AllowEgress = []string{egress.Local} })
		runID := h.run(h.initialCommit(), "main", h.pipeline())
		fin := h.finished(runID)
		want := "verification failed on staging: GET " + h.health.URL + "/staging: egress refused: 127.0.0.1 is a loopback address; " +
			`to allow it, add "loopback" or "127.0.0.1/32" to the allow-egress ($SLUICE_RELEASE_ALLOW_EGRESS) setting`
		if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED || !strings.HasPrefix(fin.GetReason(), want) {
			t.Fatalf("ReleaseFinished = %v\nwant FAILED, reason starting %q", fin, want)
		}
		if got := h.deploys("staging"); len(got) != 1 {
			t.Fatalf("staging deploys = %q, want the one deploy", got)
		}
		lines, _ := h.logs(runID, "verify")
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "egress refused: 127.0.0.1") }) {
			t.Fatalf("verify log does not tell the refusal:\n%s", strings.Join(lines, "\n"))
		}
	})
	t.Run("local repository", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, func(c *Config) { c.AllowEgress = []string{egress.Loopback} })
		runID := h.run(h.initialCommit(), "main", h.pipeline())
		fin := h.finished(runID)
		if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_FAILED ||
			!strings.Contains(fin.GetReason(), "preparing the deploy failed on staging: check out") ||
			!strings.Contains(fin.GetReason(), "is a local repository; to allow it, add \"local\" to the allow-egress ($SLUICE_RELEASE_ALLOW_EGRESS) setting") {
			t.Fatalf("ReleaseFinished = %v, want FAILED with the local repository refused", fin)
		}
		if _, err := os.Stat(filepath.Join(StateDir(h.cfg.DataDir, repoName, "staging"), "deploys")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("staging was deployed to: %v", err)
		}
	})
}

// Release's state is not tied to one replica's volume: a replica that is
// lost takes nothing with it. The next release is deployed by a replica
// with another data directory, whose deploy finds what the first one's
// kept in $SLUICE_STATE_DIR.
func TestANewReplicaFindsTheDeployState(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())
	h.proc.Stop() // replica a is gone, with its data directory
	first := h.cfg.DataDir

	h.cfg.DataDir = t.TempDir()
	h.start()
	h.release(h.repo.CommitFiles("feat: greet", map[string]string{"greeting": "hi\n"}))
	for _, env := range []string{"staging", "production"} {
		if got := h.deploys(env); len(got) != 2 || !strings.HasPrefix(got[0], "v0.1.0 ") || !strings.HasPrefix(got[1], "v0.2.0 ") {
			t.Errorf("%s deploys seen by the new replica: %q; want v0.1.0's (the lost replica's) then v0.2.0's", env, got)
		}
	}
	if _, err := os.Stat(filepath.Join(first, "state", repoName, "staging", "deploys")); err != nil {
		t.Fatal(err)
	}
}

// A tag's run is released with the tag's version, where the pipeline's
// release.tags and the platform's environment-branches (refs/tags/...)
// allow it; a tag that names no version gets the next version; a tag
// version that would break the rules (not above an ancestor's, or of a
// commit released as another) releases nothing and says why.
func TestTagRunIsReleasedWithTheTagsVersion(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.EnvironmentBranches = "staging=main|refs/tags/*,production=refs/tags/v*" })
	pipeline := h.pipeline()
	pipeline.Release.Tags = []string{"v*", "nightly-*"}
	first := h.initialCommit()
	runID := h.run(first, "main", pipeline)
	if fin := h.finished(runID); fin.GetVersion() != "v0.1.0" || fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED {
		t.Fatalf("main: %v, want v0.1.0 in staging", fin)
	}
	if _, err := os.Stat(StateDir(h.cfg.DataDir, repoName, "production")); !os.IsNotExist(err) {
		t.Fatalf("main deployed to production (%v); environment-branches lets only tags", err)
	}

	tagged := h.repo.CommitFiles("fix: ready", map[string]string{"greeting": "ready\n"})
	runID = h.run(tagged, "refs/tags/v1.0.0", pipeline)
	fin := h.finished(runID)
	if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SUCCEEDED || fin.GetVersion() != "v1.0.0" || fin.GetReason() != "" {
		t.Fatalf("tag v1.0.0: %v, want SUCCEEDED v1.0.0 everywhere", fin)
	}
	for _, env := range []string{"staging", "production"} {
		if got := strings.TrimSpace(h.state(env, "current")); got != "v1.0.0" {
			t.Errorf("%s runs %s, want v1.0.0", env, got)
		}
	}

	skipped := func(ref, commit, want string) {
		t.Helper()
		fin := h.finished(h.run(commit, ref, pipeline))
		if fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED || !strings.Contains(fin.GetReason(), want) {
			t.Fatalf("%s: %v, want SKIPPED: %q", ref, fin, want)
		}
	}
	next := h.repo.CommitFiles("fix: more", map[string]string{"greeting": "more\n"})
	skipped("refs/tags/v0.9.0", next, "tag v0.9.0: version v0.9.0 is not above v1.0.0, the release of commit "+tagged[:7])
	skipped("refs/tags/v2.0.0", tagged, "tag v2.0.0: commit "+tagged[:7]+" is released already, as v1.0.0")
	skipped("refs/tags/release-1", next, `tag "release-1" is not a release tag (v*, nightly-*)`)

	// A tag that names no version: the next version, as for a branch.
	fin = h.finished(h.run(next, "refs/tags/nightly-1", pipeline))
	if fin.GetVersion() != "v1.0.1" || !strings.Contains(fin.GetReason(), `does not let tag ref "refs/tags/nightly-1" deploy automatically to production`) {
		t.Fatalf("tag nightly-1: %v, want v1.0.1 in staging only", fin)
	}
}
