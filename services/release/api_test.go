package release

import (
	"context"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	releaseeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/release/events/v1"
	releasev1 "github.com/sluicehq/sluice/proto/gen/sluice/release/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/release/v1/releasev1connect"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	testeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/events/v1"
	testv1 "github.com/sluicehq/sluice/proto/gen/sluice/test/v1"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
)

// Without a version, a rollback goes to the newest release verified in the
// environment whose version is older than the one running there, whatever
// order they were deployed in; never forward.
func TestRollbackWithoutVersionGoesToAnOlderVersionOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.release(h.initialCommit())                                                     // v0.1.0
	fix := h.repo.CommitFiles("fix: one", map[string]string{"greeting": "a\n"})      // v0.1.1
	h.release(fix)                                                                   //
	h.release(h.repo.CommitFiles("feat: two", map[string]string{"greeting": "b\n"})) // v0.2.0
	// A new run of v0.1.1's commit deploys nothing (v0.2.0 contains it);
	// a rollback to v0.1.1 by hand puts it back: the newest deployment is
	// now of an older version than v0.2.0's.
	if fin := h.finished(h.run(fix, "main", h.pipeline())); fin.GetOutcome() != releaseeventsv1.ReleaseOutcome_RELEASE_OUTCOME_SKIPPED {
		t.Fatalf("re-run of v0.1.1's commit: %v, want SKIPPED", fin)
	}
	ctx := context.Background()
	if _, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.1.1"}); err != nil {
		t.Fatal(err)
	}
	res, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.GetDeployment().GetVersion(); got != "v0.1.0" {
		t.Fatalf("rollback from v0.1.1 went to %s, want v0.1.0 (v0.2.0 is newer)", got)
	}
	// Nothing is older than v0.1.0.
	_, err = h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging"})
	wantCode(t, err, connect.CodeFailedPrecondition, `v0.1.0 runs in "staging" and no older release of "app" was verified there; nothing to roll back to`)
	if strings.Contains(err.Error(), "to_version") {
		t.Fatalf("error names a proto field: %v", err)
	}
	if got := strings.TrimSpace(h.state("staging", "current")); got != "v0.1.0" {
		t.Fatalf("staging runs %s, want v0.1.0", got)
	}

	// Each rollback asked for is in the audit log, by its caller; the
	// deploys of runs are not (no one asked for them).
	var got []string
	for _, e := range servicekittest.AuditEntries(t, h.js, 3) {
		if e.GetActorId() != auth.TokenID(h.proc.AdminToken) || e.GetActorRole() != "admin" || e.GetService() != "release" ||
			e.GetRepository() != repoName || e.GetAction() != "deployment.rollback" || e.GetProcedure() != releasev1connect.ReleaseServiceRollbackProcedure {
			t.Errorf("audit entry %v", e)
		}
		got = append(got, e.GetTarget()+" "+e.GetOutcome())
	}
	if want := []string{"staging v0.1.1 ok", "staging v0.1.0 ok", "staging failed_precondition"}; !slices.Equal(got, want) {
		t.Errorf("audit entries %q, want %q", got, want)
	}
}

// Bad input is refused with a message a person can act on: no regular
// expressions, no proto field names in the message itself.
func TestRequestsAreRefusedInWords(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"version without v", func() error {
			_, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "0.1.1"})
			return err
		}, "must be a version like v1.2.3"},
		{"version with leading zero", func() error {
			_, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "staging", ToVersion: "v0.01.1"})
			return err
		}, "must be a version like v1.2.3"},
		{"environment path", func() error {
			_, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: repoName, Environment: "../etc"})
			return err
		}, "must be an environment name: lower-case letters, digits, '_' and '-'"},
		{"repository path", func() error {
			_, err := h.client.Rollback(ctx, &releasev1.RollbackRequest{Repository: "../app", Environment: "staging"})
			return err
		}, "must be a repository name"},
		{"list without repository or run", func() error {
			_, err := h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{})
			return err
		}, "name a repository or a run"},
		{"bad page token", func() error {
			_, err := h.client.ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: repoName, PageToken: "nope"})
			return err
		}, "page_token is not a token of this list"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			wantCode(t, err, connect.CodeInvalidArgument, tt.want)
			if strings.Contains(err.Error(), "regex") || strings.Contains(err.Error(), "^") {
				t.Fatalf("error shows a pattern: %v", err)
			}
		})
	}
}

// The list calls page with page_size and page_token (each item exactly
// once), keep limit working, and take a run id.
func TestListsPageAndTakeARun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var runs []string
	for i, msg := range []string{"chore: initial import", "fix: one", "fix: two"} {
		commit := h.initialCommit()
		if i > 0 {
			commit = h.repo.CommitFiles(msg, map[string]string{"greeting": msg + "\n"})
		}
		runID, _ := h.release(commit)
		runs = append(runs, runID)
	}
	ctx := context.Background()

	var versions []string
	for _, r := range pageAll(t, func(token string) ([]*releasev1.Release, string, error) {
		res, err := h.client.ListReleases(ctx, &releasev1.ListReleasesRequest{Repository: repoName, PageSize: 2, PageToken: token})
		return res.GetReleases(), res.GetNextPageToken(), err
	}, 2) {
		versions = append(versions, r.GetVersion())
	}
	if want := []string{"v0.1.2", "v0.1.1", "v0.1.0"}; !slices.Equal(versions, want) {
		t.Fatalf("paged releases = %q, want %q", versions, want)
	}
	var deployments []string
	for _, d := range pageAll(t, func(token string) ([]*releasev1.Deployment, string, error) {
		res, err := h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: repoName, PageSize: 4, PageToken: token})
		return res.GetDeployments(), res.GetNextPageToken(), err
	}, 4) {
		deployments = append(deployments, d.GetId())
	}
	if slices.Sort(deployments); len(slices.Compact(slices.Clone(deployments))) != 6 || len(deployments) != 6 {
		t.Fatalf("paged deployments = %q, want 6 different ones", deployments)
	}

	// limit still bounds a list (superseded by page_size).
	res, err := h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{Repository: repoName, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetDeployments()) != 1 || res.GetNextPageToken() == "" {
		t.Fatalf("limit 1: %d deployments, next page %q", len(res.GetDeployments()), res.GetNextPageToken())
	}

	// A run's release and deployments.
	rels, err := h.client.ListReleases(ctx, &releasev1.ListReleasesRequest{RunId: runs[1]})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels.GetReleases()) != 1 || rels.GetReleases()[0].GetVersion() != "v0.1.1" {
		t.Fatalf("run's releases = %v, want v0.1.1", rels.GetReleases())
	}
	deps, err := h.client.ListDeployments(ctx, &releasev1.ListDeploymentsRequest{RunId: runs[1]})
	if err != nil {
		t.Fatal(err)
	}
	if got := deploymentSummary(deps.GetDeployments()); !slices.Equal(got, []string{"production v0.1.1 VERIFIED", "staging v0.1.1 VERIFIED"}) {
		t.Fatalf("run's deployments = %q", got)
	}
}

// pageAll reads a list page by page (page is one call with a page token)
// and returns every item; each page has at most size items.
func pageAll[T any](t *testing.T, page func(token string) ([]T, string, error), size int) []T {
	t.Helper()
	var all []T
	token := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the list does not stop paging")
		}
		items, next, err := page(token)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) > size {
			t.Fatalf("a page of %d items, want at most %d", len(items), size)
		}
		all = append(all, items...)
		if token = next; token == "" {
			return all
		}
	}
}

// A TestRunFinished whose repository name could not name a directory
// breaks the rule in its proto: it is dead-lettered as it is received,
// never handled.
func TestEventWithAnUnusableRepositoryNameIsDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	commit := h.initialCommit()
	runID := uuid.Must(uuid.NewV7()).String()
	p := &testeventsv1.TestRunFinished{
		RunId: runID, TestRunId: "t-" + runID, Commit: commit, Branch: "main",
		Repository: &sourceeventsv1.RepositoryRef{Id: "repo-1", Name: "placeholder", Url: h.repo.Dir},
		Status:     testv1.TestRunStatus_TEST_RUN_STATUS_PASSED,
		Pipeline:   h.pipeline(),
	}
	ev, err := events.New(p, "t-"+runID, runID)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	// What a producer that did not validate would send.
	msg.Data = []byte(strings.Replace(string(msg.Data), `"repository":{"id":"repo-1","name":"placeholder"`,
		`"repository":{"id":"repo-1","name":"../../outside"`, 1))
	if _, err := events.Decode(msg.Subject, msg.Header, msg.Data); err == nil {
		t.Fatal("Decode accepted a repository name that is a path")
	}
	p.Repository.Name = "../../outside"
	if _, err := events.New(p, "t-"+runID, runID); err == nil {
		t.Fatal("events.New made a TestRunFinished whose repository name is a path")
	}
	// Release checks the commit out and asks source for the commits before
	// it: anything but a full sha is refused too.
	p.Repository.Name = "placeholder"
	for _, bad := range []string{"HEAD", "--upload-pack=touch /tmp/x", commit[:12]} {
		p.Commit = bad
		if _, err := events.New(p, "t-"+runID, runID); err == nil {
			t.Fatalf("events.New made a TestRunFinished whose commit is %q", bad)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	servicekittest.DeadLetter(t, h.js, Name, consumerDurable, runID)
	if n := len(eventsOf[*releaseeventsv1.ReleaseFinished](h.events, runID)); n != 0 {
		t.Fatalf("the event was handled: %d ReleaseFinished", n)
	}
	if _, err := h.client.GetLogs(ctx, &releasev1.GetLogsRequest{RunId: runID}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("the run has a release stage: %v", err)
	}
}
