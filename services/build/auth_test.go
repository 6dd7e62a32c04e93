package build_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
)

// tail reads a TailLogs stream to its end and returns how many messages
// carried lines and how it ended.
func tail(ctx context.Context, c buildv1connect.BuildServiceClient, runID string) (int, error) {
	stream, err := c.TailLogs(ctx, &buildv1.TailLogsRequest{RunId: runID})
	return servicekittest.CountMessages(stream, err, func(m *buildv1.TailLogsResponse) bool { return len(m.GetLines()) > 0 })
}

// A token limited to repositories reads the builds and logs of those
// repositories only: GetBuild, GetLogs and TailLogs of another
// repository's run answer permission_denied, TailLogs before any message,
// also when it was called before the run had a build. A token limited to
// the run's repository, and an admin token, read them.
func TestRepositoryLimitedTokens(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	spec := &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{Name: "greet", Run: "echo hello"}}}
	req := runRequest(repo, spec) // of repository "hello"
	runID := req.GetRunId()
	h.publish(t, req)
	h.finished(t, runID)
	b := h.build(t, runID)

	own := h.clientWith(servicekittest.IssueToken(t, h.nats.URL, authv1.Role_ROLE_VIEWER, "hello"))
	other := h.clientWith(servicekittest.IssueToken(t, h.nats.URL, authv1.Role_ROLE_VIEWER, "other", "more"))
	ctx := t.Context()
	getBuild := func(c buildv1connect.BuildServiceClient, req *buildv1.GetBuildRequest) error {
		_, err := c.GetBuild(ctx, req)
		return err
	}
	servicekittest.WaitKnown(t, func() error { return getBuild(own, &buildv1.GetBuildRequest{RunId: runID}) })
	servicekittest.WaitKnown(t, func() error { return getBuild(other, &buildv1.GetBuildRequest{RunId: runID}) })

	for name, c := range map[string]buildv1connect.BuildServiceClient{"token of hello": own, "admin": h.client} {
		for _, req := range []*buildv1.GetBuildRequest{{RunId: runID}, {Id: b.GetId()}, {Id: runID}} {
			res, err := c.GetBuild(ctx, req)
			if err != nil || res.GetBuild().GetId() != b.GetId() {
				t.Errorf("%s: GetBuild(%v) = %v, %v; want the build", name, req, res.GetBuild(), err)
			}
		}
		logs, err := c.GetLogs(ctx, &buildv1.GetLogsRequest{RunId: runID})
		if err != nil || len(logs.GetLines()) == 0 || !logs.GetComplete() {
			t.Errorf("%s: GetLogs = %d lines (complete %v), %v; want the log", name, len(logs.GetLines()), logs.GetComplete(), err)
		}
		if n, err := tail(ctx, c, runID); err != nil || n == 0 {
			t.Errorf("%s: TailLogs sent %d messages, ended with %v; want the lines and a clean end", name, n, err)
		}
	}

	for _, req := range []*buildv1.GetBuildRequest{{RunId: runID}, {Id: b.GetId()}, {Id: runID}} {
		if err := getBuild(other, req); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("token of other repositories: GetBuild(%v): %v; want permission_denied", req, err)
		}
	}
	if res, err := other.GetLogs(ctx, &buildv1.GetLogsRequest{RunId: runID}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("token of other repositories: GetLogs = %d lines, %v; want permission_denied", len(res.GetLines()), err)
	}
	if n, err := tail(ctx, other, runID); n != 0 || connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("token of other repositories: TailLogs sent %d messages, ended with %v; want permission_denied before any", n, err)
	}

	// Tailing a run before it has a build: the limited tokens wait for the
	// build to learn its repository; the other repositories' token is then
	// refused without a line, the run's repository's token follows it.
	req = runRequest(repo, spec)
	type result struct {
		n   int
		err error
	}
	ownTail, otherTail := make(chan result, 1), make(chan result, 1)
	go func() { n, err := tail(ctx, own, req.GetRunId()); ownTail <- result{n, err} }()
	go func() { n, err := tail(ctx, other, req.GetRunId()); otherTail <- result{n, err} }()
	time.Sleep(200 * time.Millisecond) // the tails find no build
	h.publish(t, req)
	if r := <-otherTail; r.n != 0 || connect.CodeOf(r.err) != connect.CodePermissionDenied {
		t.Errorf("token of other repositories, tailing before the build: %d messages, ended with %v; want permission_denied before any", r.n, r.err)
	}
	if r := <-ownTail; r.n == 0 || r.err != nil {
		t.Errorf("token of hello, tailing before the build: %d messages, ended with %v; want the lines and a clean end", r.n, r.err)
	}
}
