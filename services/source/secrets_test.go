package source_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/source"
)

// secretsPipeline asks for two secrets in a build step and one in a
// deploy.
const secretsPipeline = `version: 1
build:
  steps:
    - name: publish
      run: ./publish.sh
      env:
        TOKEN: {secret: REGISTRY_TOKEN}
        SHARED: {secret: SHARED_KEY}
release:
  branches: [main]
  environments:
    - name: prod
      deploy: ./deploy.sh
      env:
        KUBE: {secret: PROD_KUBECONFIG}
`

func newSecretKey(t *testing.T) string {
	t.Helper()
	key, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func (h *harness) secrets() sourcev1connect.SecretServiceClient {
	return sourcev1connect.NewSecretServiceClient(h.http, h.url)
}

// asService is a SecretService client that calls as a process of service.
func (h *harness) asService(service string) sourcev1connect.SecretServiceClient {
	return sourcev1connect.NewSecretServiceClient(h.proc.ClientWith(servicekittest.ServiceSecret(h.t, h.natsURL, service)), h.url)
}

func (h *harness) setSecret(repo, name, value string) {
	h.t.Helper()
	if _, err := h.secrets().SetSecret(context.Background(), &sourcev1.SetSecretRequest{Repository: repo, Name: name, Value: value}); err != nil {
		h.t.Fatalf("SetSecret(%q, %s): %v", repo, name, err)
	}
}

// resolve asks for names as a build process, waiting until source accepts
// the new identity.
func (h *harness) resolve(client sourcev1connect.SecretServiceClient, runID string, names ...string) (map[string]string, error) {
	var res *sourcev1.ResolveSecretsResponse
	var err error
	servicekittest.WaitKnown(h.t, func() error {
		res, err = client.ResolveSecrets(context.Background(), &sourcev1.ResolveSecretsRequest{RunId: runID, Names: names})
		return err
	})
	return res.GetValues(), err
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	key := newSecretKey(t)
	dbURL := sqldbtest.URL(t)
	h := newHarness(t, 0, func(c *source.Config) { c.Keys.Text = key; c.DatabaseURL = dbURL })
	ctx := context.Background()
	src, _ := newGitRepo(t, "app", "main", secretsPipeline)
	h.register(src.Dir)
	other, _ := newGitRepo(t, "other", "main", secretsPipeline)
	h.register(other.Dir)

	const (
		token    = "canary-registry-token-6f1d"
		shared   = "canary-platform-shared-93ab"
		hidden   = "canary-platform-hidden-0c2e"
		kube     = "canary-kube\nline two of the kubeconfig\n"
		otherTok = "canary-other-repo-token-77aa"
	)
	h.setSecret("app", "REGISTRY_TOKEN", "first value")
	h.setSecret("app", "REGISTRY_TOKEN", token) // replaces
	h.setSecret("", "SHARED_KEY", shared)
	h.setSecret("", "PROD_KUBECONFIG", hidden)
	h.setSecret("app", "PROD_KUBECONFIG", kube)
	h.setSecret("other", "REGISTRY_TOKEN", otherTok)

	list, err := h.secrets().ListSecrets(ctx, &sourcev1.ListSecretsRequest{Repository: "app"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.GetSecrets() {
		names = append(names, s.GetName())
		if s.GetRepository() != "app" || s.GetUpdatedAt() == nil || s.GetCreatedAt() == nil || !strings.Contains(s.GetUpdatedBy(), "admin") {
			t.Errorf("listed %v", s)
		}
	}
	if strings.Join(names, ",") != "PROD_KUBECONFIG,REGISTRY_TOKEN" {
		t.Errorf("ListSecrets(app) = %v", names)
	}
	if platform, _ := h.secrets().ListSecrets(ctx, &sourcev1.ListSecretsRequest{}); len(platform.GetSecrets()) != 2 {
		t.Errorf("platform-wide secrets: %v", platform.GetSecrets())
	}

	// No value is stored in plain text, in any encoding the table could use.
	db := servicekittest.OpenDBAt(t, dbURL)
	rows, err := db.QueryContext(ctx, `SELECT repository_id, name, ciphertext, key_id, updated_by FROM secrets`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var cols [5]string
		if err := rows.Scan(&cols[0], &cols[1], &cols[2], &cols[3], &cols[4]); err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(cols[2])
		for _, v := range []string{token, shared, hidden, kube, otherTok, "first value"} {
			if strings.Contains(strings.Join(cols[:], " "), v) || strings.Contains(string(raw), v) {
				t.Errorf("the secrets table holds %q in plain text", v)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}

	run := h.trigger("app", "main")
	build := h.asService("build")
	values, err := h.resolve(build, run.GetId(), "REGISTRY_TOKEN", "SHARED_KEY")
	if err != nil {
		t.Fatalf("ResolveSecrets: %v", err)
	}
	release := h.asService("release")
	deploy, err := h.resolve(release, run.GetId(), "PROD_KUBECONFIG")
	if err != nil {
		t.Fatalf("ResolveSecrets as release: %v", err)
	}
	values["PROD_KUBECONFIG"] = deploy["PROD_KUBECONFIG"]
	want := map[string]string{"REGISTRY_TOKEN": token, "SHARED_KEY": shared, "PROD_KUBECONFIG": kube}
	for name, v := range want {
		if values[name] != v {
			t.Errorf("ResolveSecrets[%s] = %q, want %q (a repository's secret hides the platform's)", name, values[name], v)
		}
	}

	// Each stage gets only what its own commands ask for.
	if _, err := h.resolve(build, run.GetId(), "PROD_KUBECONFIG"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("build resolving a deploy's secret = %v, want permission_denied", err)
	}
	if _, err := h.resolve(release, run.GetId(), "REGISTRY_TOKEN"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("release resolving a build step's secret = %v, want permission_denied", err)
	}
	// Only what the run's pipeline asks for.
	h.setSecret("app", "UNASKED", "canary-unasked")
	if _, err := h.resolve(build, run.GetId(), "UNASKED"); connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "does not ask for") {
		t.Errorf("ResolveSecrets(UNASKED) = %v, want permission_denied", err)
	}
	// A secret the run asks for but nobody set fails, naming it.
	if _, err := h.secrets().DeleteSecret(ctx, &sourcev1.DeleteSecretRequest{Repository: "app", Name: "REGISTRY_TOKEN"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.resolve(build, run.GetId(), "REGISTRY_TOKEN"); connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), `"REGISTRY_TOKEN"`) {
		t.Errorf("ResolveSecrets(deleted) = %v, want failed_precondition naming the secret", err)
	}
	if _, err := h.secrets().DeleteSecret(ctx, &sourcev1.DeleteSecretRequest{Repository: "app", Name: "REGISTRY_TOKEN"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("DeleteSecret twice = %v, want not_found", err)
	}

	// No person may resolve, whatever the role; nor a service not named.
	if _, err := h.secrets().ResolveSecrets(ctx, &sourcev1.ResolveSecretsRequest{RunId: run.GetId(), Names: []string{"SHARED_KEY"}}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("ResolveSecrets as admin = %v, want permission_denied", err)
	}
	if _, err := h.resolve(h.asService("notify"), run.GetId(), "SHARED_KEY"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("ResolveSecrets as notify = %v, want permission_denied", err)
	}
	// An unknown repository, a short value, a bad name.
	if _, err := h.secrets().SetSecret(ctx, &sourcev1.SetSecretRequest{Repository: "nope", Name: "X", Value: "long enough"}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("SetSecret(nope) = %v, want not_found", err)
	}
	for _, req := range []*sourcev1.SetSecretRequest{
		{Repository: "app", Name: "X", Value: "abc"},
		{Repository: "app", Name: "1X", Value: "long enough"},
		{Repository: "app", Name: "X", Value: "nul\x00inside"},
	} {
		_, err := h.secrets().SetSecret(ctx, req)
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("SetSecret(%s) = %v, want invalid_argument", req.GetName(), err)
		}
		if err != nil && strings.Contains(err.Error(), req.GetValue()) {
			t.Errorf("SetSecret's error %q repeats the value", err)
		}
	}
}

// TestSecretKeyRotation rotates the key as docs/security.md says: a new
// key first in the ring, restart, and once source has re-encrypted, the
// old key may go.
func TestSecretKeyRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newSecretKey(t), newSecretKey(t)
	dbURL, dataDir := sqldbtest.URL(t), t.TempDir()
	start := func(keys string) *harness {
		return newHarness(t, 0, func(c *source.Config) { c.Keys.Text = keys; c.DatabaseURL = dbURL; c.DataDir = dataDir })
	}
	keyIDs := func() []string {
		db := servicekittest.OpenDBAt(t, dbURL)
		rows, err := db.QueryContext(context.Background(), `SELECT DISTINCT key_id FROM secrets`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		return ids
	}

	h := start(oldKey)
	src, _ := newGitRepo(t, "app", "main", secretsPipeline)
	h.register(src.Dir)
	h.setSecret("app", "REGISTRY_TOKEN", "value-under-the-old-key")
	h.setSecret("", "SHARED_KEY", "platform-value-old-key")
	runID := h.trigger("app", "main").GetId()
	before := keyIDs()
	h.proc.Stop()

	h = start(newKey + "\n" + oldKey)
	servicekittest.Eventually(t, "source re-encrypts with the new key", func() bool {
		ids := keyIDs()
		return len(ids) == 1 && ids[0] != before[0]
	})
	h.proc.Stop()

	h = start(newKey)
	values, err := h.resolve(h.asService("build"), runID, "REGISTRY_TOKEN", "SHARED_KEY")
	if err != nil || values["REGISTRY_TOKEN"] != "value-under-the-old-key" || values["SHARED_KEY"] != "platform-value-old-key" {
		t.Fatalf("after rotation: %v, %v", values, err)
	}
	h.proc.Stop()

	// With a key that never encrypted them, the secrets cannot be read, and
	// the error says why without repeating anything secret.
	h = start(newSecretKey(t))
	_, err = h.resolve(h.asService("build"), runID, "REGISTRY_TOKEN")
	if err == nil || !strings.Contains(err.Error(), "key ring") {
		t.Fatalf("with a foreign key: %v", err)
	}
}

func TestSecretsNeedAKey(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	src, _ := newGitRepo(t, "app", "main", secretsPipeline)
	h.register(src.Dir)
	_, err := h.secrets().SetSecret(context.Background(), &sourcev1.SetSecretRequest{Repository: "app", Name: "X", Value: "long enough"})
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeFailedPrecondition || !strings.Contains(cerr.Message(), "secret-key-file") {
		t.Fatalf("SetSecret without a key = %v, want failed_precondition saying how to give one", err)
	}
}

// A webhook secret is an HMAC key source must read back: without a key it
// is kept as given; once source has a key it is stored encrypted (what was
// kept plainly is encrypted at start), and webhooks still verify.
func TestWebhookSecretsAreEncryptedAtRest(t *testing.T) {
	t.Parallel()
	dbURL, dataDir := sqldbtest.URL(t), t.TempDir()
	start := func(key string) *harness {
		return newHarness(t, 0, func(c *source.Config) { c.Keys.Text = key; c.DatabaseURL = dbURL; c.DataDir = dataDir })
	}
	stored := func(name string) string {
		var v string
		db := servicekittest.OpenDBAt(t, dbURL)
		if err := db.QueryRowContext(context.Background(), `SELECT webhook_secret FROM repositories WHERE name = $1`, name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	pushAccepted := func(h *harness, repo, secret, delivery string) {
		t.Helper()
		body := pushBody("refs/heads/main", strings.Repeat("0", 40))
		if a := h.hook(repo, "push", delivery, sign(secret, body), body); a.code == 401 || a.code >= 500 {
			t.Fatalf("%s: the webhook was refused: %d %v", repo, a.code, a.body)
		}
	}

	h := start("")
	old, _ := newGitRepo(t, "old", "main", validPipeline)
	oldSecret := h.register(old.Dir).GetWebhookSecret()
	if stored("old") != oldSecret {
		t.Fatal("without a key the webhook secret is not kept as given")
	}
	h.proc.Stop()

	h = start(newSecretKey(t))
	servicekittest.Eventually(t, "source encrypts the webhook secret kept plainly", func() bool {
		return strings.HasPrefix(stored("old"), "age:")
	})
	fresh, _ := newGitRepo(t, "fresh", "main", validPipeline)
	freshSecret := h.register(fresh.Dir).GetWebhookSecret()
	for name, secret := range map[string]string{"old": oldSecret, "fresh": freshSecret} {
		if v := stored(name); !strings.HasPrefix(v, "age:") || strings.Contains(v, secret) {
			t.Errorf("%s's webhook secret is stored as %q", name, v)
		}
		pushAccepted(h, name, secret, "d-"+name)
	}
	if got, _ := h.client.GetRepository(context.Background(), &sourcev1.GetRepositoryRequest{Repository: "fresh"}); got.GetRepository().GetWebhookSecret() != "" {
		t.Error("GetRepository shows the webhook secret")
	}
	h.proc.Stop()

	// With a key that never sealed them, the webhooks cannot be checked:
	// the forge is told to try again later, and learns nothing more.
	h = start(newSecretKey(t))
	body := pushBody("refs/heads/main", strings.Repeat("0", 40))
	a := h.hook("fresh", "push", "d-x", sign(freshSecret, body), body)
	if a.code != 503 || strings.Contains(a.body["error"], "key") {
		t.Errorf("a webhook whose secret cannot be read: %d %v; want 503 without the reason", a.code, a.body)
	}
}
