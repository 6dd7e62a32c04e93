package source_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/skeema/knownhosts"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sluicehq/sluice/platform/egress"
	"github.com/sluicehq/sluice/platform/gitauth"
	"github.com/sluicehq/sluice/platform/gittest"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	sourceeventsv1 "github.com/sluicehq/sluice/proto/gen/sluice/source/events/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/source"
)

// rawMessages is the text of every message on stream, headers and data.
func rawMessages(t *testing.T, js jetstream.JetStream, stream string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			b.WriteString(m.Subject() + "\n")
			for k, v := range m.Headers() {
				b.WriteString(k + ": " + strings.Join(v, ",") + "\n")
			}
			b.Write(m.Data())
			b.WriteString("\n")
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatal(err)
		}
		if n == 0 {
			return b.String()
		}
	}
}

func connectMessage(err error) string {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce.Message()
	}
	return ""
}

// A private repository served over HTTPS with basic authentication: it is
// registered with its token in one step and read with it afterwards; a
// missing or wrong token fails saying what to do; build gets the token
// for its checkout; the token shows in no response or event.
func TestPrivateRepositoryWithToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, func(c *source.Config) {
		c.Keys.Text = newSecretKey(t)
		c.AllowEgress = []string{egress.Local, egress.Loopback}
	})
	ctx := context.Background()
	const token = "tok-source-canary-5e1f0c"
	g, _ := newGitRepo(t, "private", "trunk", validPipeline)
	srv := gittest.ServeHTTP(t, filepath.Dir(g.Dir), gitauth.DefaultUsername, token)
	url := srv.URL + "/private"
	_, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: url})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(msg, "needs a credential") || !strings.Contains(msg, "--git-token-file") {
		t.Errorf("registered without the token: %v; want invalid_argument saying how to give it", err)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: url, GitCredential: withToken("tok-wrong-one")})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(msg, "refused the repository's https-token") {
		t.Errorf("registered with a wrong token: %v; want invalid_argument saying it was refused", err)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: g.Dir, Name: "local", GitCredential: withToken(token)})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "needs no credential") {
		t.Errorf("a local repository with a token: %v; want invalid_argument", err)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: url, GitCredential: withToken("tok with space")})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a token with a space: %v; want invalid_argument", err)
	}

	res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: url, GitCredential: withToken(token)})
	if err != nil {
		t.Fatalf("registered with the token: %v", err)
	}
	repo := res.GetRepository()
	if repo.GetBranch() != "trunk" || repo.GetGitCredential() != sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_HTTPS_TOKEN {
		t.Errorf("registered %v; want branch trunk (read with the token) and an https token", repo)
	}
	// Registered again with a credential, it says the credential is not
	// changed that way, and how it is; the audit log records the refusal.
	const other = "tok-other-canary-77"
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: url, GitCredential: withToken(other)})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(msg, "sluice secret set private "+gitauth.TokenSecret) || strings.Contains(msg, other) {
		t.Errorf("registered again with another token: %v; want failed_precondition saying to use sluice secret set", err)
	}
	waitAudit(t, sourcev1connect.NewAuditServiceClient(h.http, h.url), "repository.create refused as failed_precondition", func(e *auditv1.AuditEntry) bool {
		return e.GetAction() == "repository.create" && e.GetOutcome() == "failed_precondition"
	})
	got, _ := h.client.GetRepository(ctx, &sourcev1.GetRepositoryRequest{Repository: "private"})
	if got.GetRepository().GetGitCredential() != sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_HTTPS_TOKEN {
		t.Errorf("GetRepository: %v", got.GetRepository())
	}
	list, err := h.secrets().ListSecrets(ctx, &sourcev1.ListSecretsRequest{Repository: "private"})
	if err != nil || len(list.GetSecrets()) != 1 || list.GetSecrets()[0].GetName() != gitauth.TokenSecret {
		t.Errorf("the repository's secrets: %v, %v; want %s only", list.GetSecrets(), err, gitauth.TokenSecret)
	}

	// A new commit is fetched with the token; its run says the repository
	// has a token, and build may have it (the default username with it).
	g.CommitFile("b.txt", "b\n", "second")
	run := h.trigger("private", "")
	ev := h.waitRunEvent(subjectRunRequested, run.GetId())
	if req, _ := ev.Payload.(*sourceeventsv1.RunRequested); req.GetRepository().GetGitCredential() != sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_HTTPS_TOKEN {
		t.Errorf("RunRequested's repository = %v, want it to have an https token", req.GetRepository())
	}
	values, err := h.resolve(h.asService("build"), run.GetId(), gitauth.TokenSecret, gitauth.UsernameSecret)
	if err != nil || values[gitauth.TokenSecret] != token || values[gitauth.UsernameSecret] != gitauth.DefaultUsername {
		t.Errorf("build resolving the credential: %v, %v", values, err)
	}
	if _, err := h.resolve(h.asService("test"), run.GetId(), gitauth.SSHKeySecret); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("resolving an SSH key the repository does not have: %v; want failed_precondition", err)
	}

	// Reserved names are a repository's, and checked.
	_, err = h.secrets().SetSecret(ctx, &sourcev1.SetSecretRequest{Name: gitauth.TokenSecret, Value: token})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a platform-wide %s: %v; want invalid_argument", gitauth.TokenSecret, err)
	}
	_, err = h.secrets().SetSecret(ctx, &sourcev1.SetSecretRequest{Repository: "private", Name: gitauth.KnownHostsSecret, Value: "not a known_hosts line"})
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a bad %s: %v; want invalid_argument", gitauth.KnownHostsSecret, err)
	}
	_, err = h.secrets().SetSecret(ctx, &sourcev1.SetSecretRequest{Repository: "private", Name: gitauth.TokenSecret, Value: "tok\twith-tab"})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(connectMessage(err), "without spaces") {
		t.Errorf("a %s with a tab: %v; want invalid_argument, as with the repository (TestCredentialValuesFollowOneRule)", gitauth.TokenSecret, err)
	}

	// Without its token, the repository cannot be read, and the run says
	// how to give it one.
	if _, err := h.secrets().DeleteSecret(ctx, &sourcev1.DeleteSecretRequest{Repository: "private", Name: gitauth.TokenSecret}); err != nil {
		t.Fatal(err)
	}
	g.CommitFile("c.txt", "c\n", "third")
	_, err = h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "private"})
	if !strings.Contains(connectMessage(err), "needs a credential") {
		t.Errorf("a run without the token: %v; want a message saying the repository needs a credential", err)
	}
	h.setSecret("private", gitauth.TokenSecret, token)
	if _, err := h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "private"}); err != nil {
		t.Errorf("a run with the token set again: %v", err)
	}

	// Nothing source said shows the token.
	shown := []string{rawMessages(t, h.js, "SOURCE"), protojson.Format(res), protojson.Format(got), protojson.Format(list)}
	for i, text := range shown {
		if strings.Contains(text, token) {
			t.Errorf("text %d shows the token:\n%s", i, text)
		}
	}
	if !strings.Contains(shown[0], "HTTPS_TOKEN") && !strings.Contains(shown[0], "git_credential") && !strings.Contains(shown[0], "gitCredential") {
		t.Errorf("the events do not say the repository has a token:\n%.2000s", shown[0])
	}
}

// withToken is a git_credential of an HTTPS token.
func withToken(token string) *sourcev1.GitCredential {
	return &sourcev1.GitCredential{Kind: &sourcev1.GitCredential_HttpsToken{HttpsToken: &sourcev1.HTTPSToken{Token: token}}}
}

// A token never goes over plain http:// to another machine, where anyone
// on the network path could read it: registering a repository by such a
// URL with a token is refused saying to use https://, and so is setting a
// token for a repository registered by one (before Sluice refused it); a
// token such a repository has already is not sent, and the fetch says why.
// Over loopback (TestPrivateRepositoryWithToken) a token is sent.
func TestATokenIsNeverSentOverPlainHTTP(t *testing.T) {
	t.Parallel()
	dbURL := sqldbtest.URL(t)
	h := newHarness(t, 0, func(c *source.Config) {
		c.Keys.Text = newSecretKey(t)
		c.DatabaseURL = dbURL
		c.AllowEgress = []string{egress.Local, egress.Loopback}
	})
	ctx := context.Background()
	const token = "tok-plain-http-canary-3"
	_, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: "http://git.example/org/app.git", GitCredential: withToken(token)})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(msg, "git_credential") || !strings.Contains(msg, "https://") || strings.Contains(msg, token) {
		t.Errorf("registered http://git.example with a token: %v; want invalid_argument naming git_credential and saying to use https://", err)
	}

	// A repository an older Sluice registered by an http:// URL to another
	// machine, with its token: registered here over loopback, then given
	// the URL the older one kept.
	g, _ := newGitRepo(t, "old", "trunk", validPipeline)
	srv := gittest.ServeHTTP(t, filepath.Dir(g.Dir), gitauth.DefaultUsername, token)
	if _, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: srv.URL + "/old", GitCredential: withToken(token)}); err != nil {
		t.Fatal(err)
	}
	db := servicekittest.OpenDBAt(t, dbURL)
	if _, err := db.ExecContext(ctx, `UPDATE repositories SET url = $1 WHERE name = $2`, "http://git.example/org/old.git", "old"); err != nil {
		t.Fatal(err)
	}
	_, err = h.secrets().SetSecret(ctx, &sourcev1.SetSecretRequest{Repository: "old", Name: gitauth.TokenSecret, Value: token})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(msg, gitauth.TokenSecret) || !strings.Contains(msg, "https://") || strings.Contains(msg, token) {
		t.Errorf("set %s for a repository read over http:// from another machine: %v; want failed_precondition saying to use https://", gitauth.TokenSecret, err)
	}
	_, err = h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "old"})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(msg, "refusing to send a credential over plain http:// to git.example") || strings.Contains(msg, token) {
		t.Errorf("a fetch of that repository with its token: %v; want failed_precondition: the token not sent, saying why", err)
	}
}

// A credential the forge refuses is no outage, and trying again does not
// mend it: a trigger says so as a failed precondition (not unavailable,
// which the CLI words "cannot reach the platform"), a webhook gets a 422
// saying so (not a 503 that asks for a redelivery) and the service logs
// it, and the poller logs it and asks the forge again only after a wait,
// not at every tick, until the credential is set again. Nothing shows the
// refused token.
func TestARefusedCredentialIsAFailedPrecondition(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, func(c *source.Config) {
		c.Keys.Text = newSecretKey(t)
		c.AllowEgress = []string{egress.Local, egress.Loopback}
	})
	ctx := context.Background()
	const token, wrong = "tok-refused-canary-9", "tok-wrong-canary-9"
	g, _ := newGitRepo(t, "private", "trunk", validPipeline)
	srv := gittest.ServeHTTP(t, filepath.Dir(g.Dir), gitauth.DefaultUsername, token)
	res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: srv.URL + "/private", GitCredential: withToken(token)})
	if err != nil {
		t.Fatal(err)
	}
	h.setSecret("private", gitauth.TokenSecret, wrong)
	head := g.CommitFile("b.txt", "b\n", "second")

	_, err = h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "private"})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(msg, "the forge refused the repository's credential") || strings.Contains(msg, wrong) {
		t.Errorf("a trigger with a refused token: %v; want failed_precondition saying the forge refused the credential", err)
	}
	body := pushBody("refs/heads/trunk", head)
	a := h.hook("private", "push", "delivery-refused", sign(res.GetRepository().GetWebhookSecret(), body), body)
	if a.code != http.StatusUnprocessableEntity || !strings.Contains(a.body["error"], "the forge refused the repository's credential") || strings.Contains(a.body["error"], wrong) {
		t.Errorf("a push with a refused token: %d %v; want 422 saying the forge refused the credential", a.code, a.body)
	}

	before := srv.Refused()
	h.svc.PollOnce(ctx)
	tried := srv.Refused()
	if tried == before {
		t.Fatal("the poll did not ask the forge")
	}
	h.svc.PollOnce(ctx)
	h.svc.PollOnce(ctx)
	if srv.Refused() != tried {
		t.Errorf("the next polls asked the forge again at once (%d refused requests, then %d)", tried, srv.Refused())
	}
	logs := h.logs.String()
	for _, want := range []string{"webhook: the repository's credential was refused", "poll: the repository's credential was refused"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, wrong) {
		t.Errorf("the log shows the token:\n%s", logs)
	}

	// Set again, the repository is polled at the next tick, and its new
	// commit runs.
	h.setSecret("private", gitauth.TokenSecret, token)
	h.svc.PollOnce(ctx)
	if runs := h.listRuns("private"); len(runs) != 1 || runs[0].GetCommit() != head {
		t.Errorf("runs after the token was set again: %v; want one of %s", runs, head)
	}
}

// A credential's value follows one rule, whether it is given with a new
// repository (git_credential) or set later as the repository's secret
// (sluice secret set): the same values pass and fail both requests'
// validation, which the API runs on every call. A reserved name is never
// a platform-wide secret.
func TestCredentialValuesFollowOneRule(t *testing.T) {
	t.Parallel()
	register := func(c *sourcev1.GitCredential) error {
		return protovalidate.Validate(&sourcev1.CreateRepositoryRequest{Url: "https://git.example/org/app.git", GitCredential: c})
	}
	set := func(name, value string) error {
		return protovalidate.Validate(&sourcev1.SetSecretRequest{Repository: "app", Name: name, Value: value})
	}
	for _, tc := range []struct {
		what, value string
		ok          bool
	}{
		{"a token", "ghp_0123456789abcdefXYZ", true},
		{"a token of 4096 bytes", strings.Repeat("t", 4096), true},
		{"a token of non-ASCII letters", "tök-ünïcode-€", true},
		{"a token with a space", "tok with-space", false},
		{"a token with a tab", "tok\twith-tab", false},
		{"a token with a line break", "tok\nline", false},
		{"a token with a carriage return", "tok\rline", false},
		{"a token with a trailing newline", "tok-newline\n", false},
		{"a token with a DEL", "tok\x7fdel", false},
		{"a token with a NUL", "tok\x00nul", false},
		{"a token of 4097 bytes", strings.Repeat("t", 4097), false},
		{"a token of 64 KiB", strings.Repeat("t", 64<<10), false},
		{"a token of 3 bytes", "tok", false},
	} {
		regErr, setErr := register(withToken(tc.value)), set(gitauth.TokenSecret, tc.value)
		if (regErr == nil) != tc.ok || (setErr == nil) != tc.ok {
			t.Errorf("%s: given with the repository: %v; set as %s: %v; want ok=%v for both", tc.what, regErr, gitauth.TokenSecret, setErr, tc.ok)
		}
	}
	// A username set as a secret has at least 4 bytes, as every secret
	// (docs/security.md); the rest of its rule is git_credential's.
	withUsername := func(user string) *sourcev1.GitCredential {
		return &sourcev1.GitCredential{Kind: &sourcev1.GitCredential_HttpsToken{HttpsToken: &sourcev1.HTTPSToken{Token: "tok-1234", Username: user}}}
	}
	for _, tc := range []struct {
		what, value string
		ok          bool
	}{
		{"a username", "oauth2", true},
		{"a username of 256 characters", strings.Repeat("ü", 256), true},
		{"a username with a colon", "user:name", false},
		{"a username with a space", "user name", false},
		{"a username with a tab", "user\tname", false},
		{"a username with a line break", "user\nname", false},
		{"a username of 257 characters", strings.Repeat("u", 257), false},
	} {
		regErr, setErr := register(withUsername(tc.value)), set(gitauth.UsernameSecret, tc.value)
		if (regErr == nil) != tc.ok || (setErr == nil) != tc.ok {
			t.Errorf("%s: given with the repository: %v; set as %s: %v; want ok=%v for both", tc.what, regErr, gitauth.UsernameSecret, setErr, tc.ok)
		}
	}
	key, _ := gittest.NewSSHKey(t)
	withKey := func(k string) *sourcev1.GitCredential {
		return &sourcev1.GitCredential{Kind: &sourcev1.GitCredential_SshKey{SshKey: &sourcev1.SSHKey{PrivateKey: k, KnownHosts: "git.example ssh-ed25519 AAAA"}}}
	}
	for _, tc := range []struct {
		what, value string
		ok          bool
	}{
		{"a key", key, true},
		{"a key of 16 KiB", strings.Repeat("k", 16<<10), true},
		{"a key of 16 KiB and a byte", strings.Repeat("k", 16<<10+1), false},
	} {
		regErr, setErr := register(withKey(tc.value)), set(gitauth.SSHKeySecret, tc.value)
		if (regErr == nil) != tc.ok || (setErr == nil) != tc.ok {
			t.Errorf("%s: given with the repository: %v; set as %s: %v; want ok=%v for both", tc.what, regErr, gitauth.SSHKeySecret, setErr, tc.ok)
		}
	}
	// Other names take any value of 4 bytes to 64 KiB without NUL.
	if err := set("DEPLOY_TOKEN", "a value\twith spaces\n"); err != nil {
		t.Errorf("an ordinary secret with spaces: %v", err)
	}

	for _, name := range []string{gitauth.TokenSecret, gitauth.UsernameSecret, gitauth.SSHKeySecret, gitauth.KnownHostsSecret} {
		err := protovalidate.Validate(&sourcev1.SetSecretRequest{Name: name, Value: "tok-1234"})
		if err == nil || !strings.Contains(err.Error(), "name the repository") {
			t.Errorf("%s platform-wide: %v; want it refused", name, err)
		}
	}
	if err := protovalidate.Validate(&sourcev1.SetSecretRequest{Name: "SLUICE_GIT_OTHER", Value: "tok-1234"}); err != nil {
		t.Errorf("another name platform-wide: %v", err)
	}
}

// A private repository served over SSH: registered with its deploy key and
// its server's known_hosts line; a host key the line does not list is
// refused, saying so.
func TestPrivateRepositoryWithSSHKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0, func(c *source.Config) {
		c.Keys.Text = newSecretKey(t)
		c.AllowEgress = []string{egress.SSH}
	})
	ctx := context.Background()
	g, _ := newGitRepo(t, "private", "trunk", validPipeline)
	key, pub := gittest.NewSSHKey(t)
	srv := gittest.ServeSSH(t, filepath.Dir(g.Dir), pub)
	withKey := func(knownHosts string) *sourcev1.GitCredential {
		return &sourcev1.GitCredential{Kind: &sourcev1.GitCredential_SshKey{SshKey: &sourcev1.SSHKey{PrivateKey: key, KnownHosts: knownHosts}}}
	}
	_, otherHost := gittest.NewSSHKey(t)
	_, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: srv.URL("private"), GitCredential: withKey(knownhosts.Line([]string{srv.Addr}, otherHost))})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(msg, "host key differs") || strings.Contains(msg, "PRIVATE KEY") {
		t.Errorf("registered with a wrong known_hosts line: %v; want invalid_argument saying the host key differs", err)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: srv.URL("private"), GitCredential: withKey("not a line")})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "known_hosts") {
		t.Errorf("registered with a bad known_hosts: %v", err)
	}
	res, err := h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: srv.URL("private"), GitCredential: withKey(srv.KnownHosts())})
	if err != nil {
		t.Fatal(err)
	}
	if r := res.GetRepository(); r.GetBranch() != "trunk" || r.GetGitCredential() != sourcev1.GitCredentialKind_GIT_CREDENTIAL_KIND_SSH_KEY {
		t.Errorf("registered %v", r)
	}
	_, err = h.client.CreateRepository(ctx, &sourcev1.CreateRepositoryRequest{Url: srv.URL("private"), GitCredential: withKey(srv.KnownHosts())})
	if msg := connectMessage(err); connect.CodeOf(err) != connect.CodeFailedPrecondition ||
		!strings.Contains(msg, "sluice secret set private "+gitauth.SSHKeySecret) || strings.Contains(msg, "PRIVATE KEY") {
		t.Errorf("registered again with a key: %v; want failed_precondition saying to use sluice secret set", err)
	}
	list, _ := h.secrets().ListSecrets(ctx, &sourcev1.ListSecretsRequest{Repository: "private"})
	if len(list.GetSecrets()) != 2 || list.GetSecrets()[0].GetName() != gitauth.KnownHostsSecret || list.GetSecrets()[1].GetName() != gitauth.SSHKeySecret {
		t.Errorf("the repository's secrets: %v", list.GetSecrets())
	}
	g.CommitFile("b.txt", "b\n", "second")
	if _, err := h.client.TriggerRun(ctx, &sourcev1.TriggerRunRequest{Repository: "private"}); err != nil {
		t.Errorf("a run fetched with the key: %v", err)
	}
}
