package source_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/ids"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/source"
)

// withHeader is an http.Client that sends header=value with every request
// on top of base's.
func withHeader(base *http.Client, header, value string) *http.Client {
	return &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set(header, value)
		return base.Transport.RoundTrip(r)
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// auditLog reads the whole audit log as client's caller, a page of
// pageSize at a time, following the page tokens.
func auditLog(t *testing.T, client sourcev1connect.AuditServiceClient, req *sourcev1.ListAuditEntriesRequest) []*auditv1.AuditEntry {
	t.Helper()
	var out []*auditv1.AuditEntry
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("the audit log's pages do not end")
		}
		res, err := client.ListAuditEntries(context.Background(), req)
		if err != nil {
			t.Fatalf("ListAuditEntries(%v): %v", req, err)
		}
		out = append(out, res.GetEntries()...)
		if res.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = res.GetNextPageToken()
	}
}

// waitAudit waits until the audit log holds an entry that matches.
func waitAudit(t *testing.T, client sourcev1connect.AuditServiceClient, what string, match func(*auditv1.AuditEntry) bool) {
	t.Helper()
	servicekittest.Eventually(t, "the audit log has "+what, func() bool {
		return slices.ContainsFunc(auditLog(t, client, &sourcev1.ListAuditEntriesRequest{PageSize: 1000}), match)
	})
}

// Every change made through source's API is in the audit log with who made
// it, on what, and how it ended; refused attempts too; a secret's value
// never is, in the log or on the way there.
func TestAuditLogRecordsEveryChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, func(c *source.Config) { c.Keys.Text = newSecretKey(t) })
	ctx := context.Background()
	auditClient := sourcev1connect.NewAuditServiceClient(h.http, h.url)
	access := sourcev1connect.NewAccessServiceClient(h.http, h.url)
	me, err := access.WhoAmI(ctx, &sourcev1.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	adminID := me.GetTokenId()

	g, _ := newGitRepo(t, "app", "main", validPipeline)
	repo := h.register(g.Dir)
	// A second registration the same way changes nothing and is recorded.
	h.register(g.Dir)
	withRequestID := sourcev1connect.NewSourceServiceClient(withHeader(h.http, audit.RequestIDHeader, "req-7f3a"), h.url)
	trig, err := withRequestID.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "app"})
	if err != nil {
		t.Fatal(err)
	}
	const canary = "audit-canary-value-9c1e77"
	if _, err := h.secrets().SetSecret(ctx, &sourcev1.SetSecretRequest{Repository: "app", Name: "DEPLOY_KEY", Value: canary}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.secrets().DeleteSecret(ctx, &sourcev1.DeleteSecretRequest{Repository: "app", Name: "DEPLOY_KEY"}); err != nil {
		t.Fatal(err)
	}
	tok, err := access.CreateToken(ctx, &sourcev1.CreateTokenRequest{Name: "ci", Role: authv1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := access.RevokeToken(ctx, &sourcev1.RevokeTokenRequest{Id: tok.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	// Refused and failed attempts.
	viewerSecret := servicekittest.IssueToken(t, h.natsURL, authv1.Role_ROLE_VIEWER)
	viewer := sourcev1connect.NewSourceServiceClient(h.proc.ClientWith(viewerSecret), h.url)
	servicekittest.WaitKnown(t, func() error { _, err := viewer.ListRuns(ctx, &sourcev1.ListRunsRequest{}); return err })
	if _, err := viewer.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "app"}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a viewer triggers: %v", err)
	}
	anonymous := sourcev1connect.NewSecretServiceClient(http.DefaultClient, h.url)
	if _, err := anonymous.SetSecret(ctx, &sourcev1.SetSecretRequest{Repository: "app", Name: "X", Value: canary}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("an anonymous caller sets a secret: %v", err)
	}
	if _, err := access.RevokeToken(ctx, &sourcev1.RevokeTokenRequest{Id: "no-such-token"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("revoking a token that does not exist: %v", err)
	}

	byAdmin := func(e *auditv1.AuditEntry) bool {
		return e.GetActorKind() == audit.ActorUser && e.GetActorId() == adminID && e.GetActorRole() == "admin" && e.GetService() == "source"
	}
	for _, want := range []struct {
		action, repository, target, outcome string
		by                                  func(*auditv1.AuditEntry) bool
	}{
		{"repository.create", "app", repo.GetId(), "ok", byAdmin},
		{"run.trigger", "app", trig.GetRun().GetId(), "ok", func(e *auditv1.AuditEntry) bool { return byAdmin(e) && e.GetRequestId() == "req-7f3a" }},
		{"secret.set", "app", "DEPLOY_KEY", "ok", byAdmin},
		{"secret.delete", "app", "DEPLOY_KEY", "ok", byAdmin},
		{"token.create", "", tok.GetToken().GetId(), "ok", byAdmin},
		{"token.revoke", "", tok.GetToken().GetId(), "ok", byAdmin},
		{"token.revoke", "", "no-such-token", "not_found", byAdmin},
		{"run.trigger", "app", "", "permission_denied", func(e *auditv1.AuditEntry) bool {
			return e.GetActorId() == auth.TokenID(viewerSecret) && e.GetActorRole() == "viewer" && e.GetActorName() == "test-viewer"
		}},
		{"secret.set", "app", "X", "unauthenticated", func(e *auditv1.AuditEntry) bool {
			return e.GetActorKind() == audit.ActorAnonymous && e.GetActorId() == ""
		}},
	} {
		waitAudit(t, auditClient, want.action+" "+want.outcome+" on "+want.target, func(e *auditv1.AuditEntry) bool {
			return e.GetAction() == want.action && e.GetRepository() == want.repository && e.GetOutcome() == want.outcome &&
				(want.target == "" || e.GetTarget() == want.target) && want.by(e) && e.GetTime() != nil && e.GetId() != ""
		})
	}
	all := auditLog(t, auditClient, &sourcev1.ListAuditEntriesRequest{})
	if len(all) != 10 {
		t.Errorf("the audit log has %d entries, want one per call (10): %v", len(all), all)
	}
	creates := 0
	for _, e := range all {
		if e.GetAction() == "repository.create" && e.GetTarget() == repo.GetId() && e.GetRepository() == "app" && e.GetOutcome() == "ok" {
			creates++
		}
	}
	if creates != 2 {
		t.Errorf("%d entries of registering app, want 2 (the second changed nothing)", creates)
	}
	for i := 1; i < len(all); i++ {
		if all[i].GetTime().AsTime().After(all[i-1].GetTime().AsTime()) {
			t.Errorf("entries are not newest first: %v before %v", all[i-1], all[i])
		}
	}

	// The value is nowhere: not in the log, not in the AUDIT stream.
	for _, e := range all {
		if strings.Contains(e.String(), canary) {
			t.Errorf("an audit entry holds the secret's value: %v", e)
		}
	}
	for _, m := range streamMessages(t, h.js, "AUDIT") {
		if strings.Contains(string(m.Data()), canary) || strings.Contains(m.Headers().Get("ce-subject"), canary) {
			t.Errorf("an audit event holds the secret's value: %s", m.Data())
		}
	}
	// Nor a token's secret.
	for _, e := range all {
		if strings.Contains(e.String(), tok.GetSecret()) || strings.Contains(e.String(), viewerSecret) {
			t.Errorf("an audit entry holds a token's secret: %v", e)
		}
	}
}

// streamMessages reads every message of stream.
func streamMessages(t *testing.T, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if n == 0 {
			return out
		}
	}
}

// The log is admins' only; a token limited to repositories sees only its
// repositories' entries; filters and pages work; entries past the
// retention are pruned.
func TestAuditLogScopeFiltersAndPages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	ctx := context.Background()
	auditClient := sourcev1connect.NewAuditServiceClient(h.http, h.url)
	for _, name := range []string{"app", "web"} {
		g, _ := newGitRepo(t, name, "main", validPipeline)
		h.register(g.Dir)
	}
	for range 3 {
		h.trigger("app", "")
	}
	h.trigger("web", "")
	waitAudit(t, auditClient, "the web trigger", func(e *auditv1.AuditEntry) bool {
		return e.GetAction() == "run.trigger" && e.GetRepository() == "web"
	})
	waitAudit(t, auditClient, "six entries", func(*auditv1.AuditEntry) bool {
		return len(auditLog(t, auditClient, &sourcev1.ListAuditEntriesRequest{})) == 6
	})

	// Pages of 2 give the same entries, once each, in the same order.
	whole := auditLog(t, auditClient, &sourcev1.ListAuditEntriesRequest{})
	paged := auditLog(t, auditClient, &sourcev1.ListAuditEntriesRequest{PageSize: 2})
	if len(paged) != len(whole) {
		t.Fatalf("pages of 2 gave %d entries, one page %d", len(paged), len(whole))
	}
	for i := range whole {
		if paged[i].GetId() != whole[i].GetId() {
			t.Errorf("entry %d: %s paged, %s whole", i, paged[i].GetId(), whole[i].GetId())
		}
	}
	if _, err := auditClient.ListAuditEntries(ctx, &sourcev1.ListAuditEntriesRequest{PageToken: "not-a-token"}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a bad page token: %v", err)
	}

	count := func(client sourcev1connect.AuditServiceClient, req *sourcev1.ListAuditEntriesRequest) int {
		return len(auditLog(t, client, req))
	}
	for name, c := range map[string]struct {
		req  *sourcev1.ListAuditEntriesRequest
		want int
	}{
		"repository":    {&sourcev1.ListAuditEntriesRequest{Repository: "app"}, 4},
		"action":        {&sourcev1.ListAuditEntriesRequest{Action: "run.trigger"}, 4},
		"action prefix": {&sourcev1.ListAuditEntriesRequest{Action: "repository."}, 2},
		"not a prefix":  {&sourcev1.ListAuditEntriesRequest{Action: "run"}, 0},
		"actor by name": {&sourcev1.ListAuditEntriesRequest{Actor: "test-admin"}, 6},
		"another actor": {&sourcev1.ListAuditEntriesRequest{Actor: "someone"}, 0},
		"since":         {&sourcev1.ListAuditEntriesRequest{Since: whole[1].GetTime()}, 2},
		"until":         {&sourcev1.ListAuditEntriesRequest{Until: whole[1].GetTime()}, 4},
		"future":        {&sourcev1.ListAuditEntriesRequest{Since: timestamppb.New(time.Now().Add(time.Hour))}, 0},
	} {
		if got := count(auditClient, c.req); got != c.want {
			t.Errorf("%s: %d entries, want %d", name, got, c.want)
		}
	}

	// A token limited to app sees app's entries only, and may not ask for
	// web's; viewers and operators may not read the log.
	limited := sourcev1connect.NewAuditServiceClient(h.proc.ClientWith(servicekittest.IssueToken(t, h.natsURL, authv1.Role_ROLE_ADMIN, "app")), h.url)
	servicekittest.WaitKnown(t, func() error {
		_, err := limited.ListAuditEntries(ctx, &sourcev1.ListAuditEntriesRequest{})
		return err
	})
	for _, e := range auditLog(t, limited, &sourcev1.ListAuditEntriesRequest{}) {
		if e.GetRepository() != "app" {
			t.Errorf("a token limited to app sees %v", e)
		}
	}
	if got := count(limited, &sourcev1.ListAuditEntriesRequest{}); got != 4 {
		t.Errorf("a token limited to app sees %d entries, want app's 4", got)
	}
	if _, err := limited.ListAuditEntries(ctx, &sourcev1.ListAuditEntriesRequest{Repository: "web"}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a token limited to app asks for web's entries: %v", err)
	}
	for _, role := range []authv1.Role{authv1.Role_ROLE_VIEWER, authv1.Role_ROLE_OPERATOR} {
		c := sourcev1connect.NewAuditServiceClient(h.proc.ClientWith(servicekittest.IssueToken(t, h.natsURL, role)), h.url)
		var err error
		servicekittest.Eventually(t, "the "+auth.RoleName(role)+" token is known", func() bool {
			_, err = c.ListAuditEntries(ctx, &sourcev1.ListAuditEntriesRequest{})
			return connect.CodeOf(err) != connect.CodeUnauthenticated
		})
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s reads the audit log: %v", auth.RoleName(role), err)
		}
	}

	// An entry older than the retention (a year) is pruned; a newer one is
	// kept.
	old := publishAuditEntry(t, h.js, "build", &auditv1.AuditEntry{
		Id: ids.New(), Time: timestamppb.New(time.Now().Add(-400 * 24 * time.Hour)), Service: "build",
		Procedure: "/sluice.build.v1.BuildService/Old", Action: "build.old", ActorKind: audit.ActorService, ActorName: "release", Outcome: "ok",
	})
	waitAudit(t, auditClient, "the old entry", func(e *auditv1.AuditEntry) bool { return e.GetId() == old })
	if err := h.svc.PruneOnce(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range auditLog(t, auditClient, &sourcev1.ListAuditEntriesRequest{}) {
		if e.GetId() == old {
			t.Error("an entry older than the retention was not pruned")
		}
	}
	if got := count(auditClient, &sourcev1.ListAuditEntriesRequest{Action: "run.trigger"}); got != 4 {
		t.Errorf("pruning removed newer entries: %d triggers left", got)
	}

	// An entry that claims another service than the subject it came on is
	// refused (dead-lettered), not kept.
	forged := publishAuditEntry(t, h.js, "build", &auditv1.AuditEntry{
		Id: ids.New(), Time: timestamppb.Now(), Service: "release",
		Procedure: "/sluice.release.v1.ReleaseService/Rollback", Action: "deployment.rollback", ActorKind: audit.ActorAnonymous, Outcome: "ok",
	})
	if reason := servicekittest.DeadLetter(t, h.js, "source", "source-audit", ""); !strings.Contains(reason, `published by "build"`) {
		t.Errorf("the forged entry was dead-lettered for %q", reason)
	}
	for _, e := range auditLog(t, auditClient, &sourcev1.ListAuditEntriesRequest{}) {
		if e.GetId() == forged {
			t.Errorf("a forged entry was kept: %v", e)
		}
	}
}

// publishAuditEntry publishes entry as service's audit event, as
// service's outbox would, and returns its id.
func publishAuditEntry(t *testing.T, js jetstream.JetStream, service string, entry *auditv1.AuditEntry) string {
	t.Helper()
	ev, err := events.NewAudit(service, entry)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ev.Msg()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return entry.GetId()
}
