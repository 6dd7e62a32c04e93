package source_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
	"github.com/sluicehq/sluice/services/source"
)

// A token an admin makes works at once, is listed without its secret, is
// limited to its repositories, and stops working once revoked.
func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 0)
	ctx := context.Background()
	access := sourcev1connect.NewAccessServiceClient(h.http, h.url)
	g, _ := newGitRepo(t, "app", "main", validPipeline)
	h.register(g.Dir)

	if _, err := access.CreateToken(ctx, &sourcev1.CreateTokenRequest{Name: "ci", Role: authv1.Role_ROLE_OPERATOR, Repositories: []string{"nope"}}); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("a token for a repository that does not exist: %v", err)
	}
	res, err := access.CreateToken(ctx, &sourcev1.CreateTokenRequest{
		Name: "ci", Role: authv1.Role_ROLE_OPERATOR, Repositories: []string{"app"}, ExpiresIn: durationpb.New(90 * 24 * 3600 * 1e9),
	})
	if err != nil {
		t.Fatal(err)
	}
	secret := res.GetSecret()
	if auth.TokenID(secret) != res.GetToken().GetId() || res.GetToken().GetExpiresAt() == nil || !strings.Contains(res.GetToken().GetCreatedBy(), "test-admin") {
		t.Fatalf("token %+v, secret id %q", res.GetToken(), auth.TokenID(secret))
	}

	ci := sourcev1connect.NewAccessServiceClient(h.proc.ClientWith(secret), h.url)
	var me *sourcev1.WhoAmIResponse
	servicekittest.Eventually(t, "the new token works", func() bool {
		me, err = ci.WhoAmI(ctx, &sourcev1.WhoAmIRequest{})
		return err == nil
	})
	if me.GetRole() != authv1.Role_ROLE_OPERATOR || me.GetTokenId() != res.GetToken().GetId() || len(me.GetRepositories()) != 1 {
		t.Errorf("whoami: %+v", me)
	}
	ciSource := sourcev1connect.NewSourceServiceClient(h.proc.ClientWith(secret), h.url)
	if _, err := ciSource.ListRuns(ctx, &sourcev1.ListRunsRequest{Repository: "app"}); err != nil {
		t.Errorf("its own repository: %v", err)
	}
	if _, err := ciSource.ListRuns(ctx, &sourcev1.ListRunsRequest{}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("every repository's runs: %v, want permission_denied", err)
	}
	if _, err := ci.ListTokens(ctx, &sourcev1.ListTokensRequest{}); connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "admin") {
		t.Errorf("an operator lists tokens: %v, want permission_denied naming the admin role", err)
	}
	repos, err := ciSource.ListRepositories(ctx, &sourcev1.ListRepositoriesRequest{})
	if err != nil || len(repos.GetRepositories()) != 1 || repos.GetRepositories()[0].GetName() != "app" {
		t.Errorf("ListRepositories for a limited token: %v %v", repos, err)
	}

	list, err := access.ListTokens(ctx, &sourcev1.ListTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetTokens()) != 1 || strings.Contains(list.String(), secret) || strings.Contains(list.String(), auth.Hash(secret)) {
		t.Errorf("ListTokens shows %v", list)
	}

	if _, err := access.RevokeToken(ctx, &sourcev1.RevokeTokenRequest{Id: res.GetToken().GetId()}); err != nil {
		t.Fatal(err)
	}
	servicekittest.Eventually(t, "the revoked token is refused", func() bool {
		_, err := ci.WhoAmI(ctx, &sourcev1.WhoAmIRequest{})
		return connect.CodeOf(err) == connect.CodeUnauthenticated
	})
	all, err := access.ListTokens(ctx, &sourcev1.ListTokensRequest{IncludeRevoked: true})
	if err != nil || len(all.GetTokens()) != 1 || all.GetTokens()[0].GetRevokedAt() == nil {
		t.Errorf("ListTokens --all: %v %v", all, err)
	}
	if active, _ := access.ListTokens(ctx, &sourcev1.ListTokensRequest{}); len(active.GetTokens()) != 0 {
		t.Errorf("revoked token still listed as active: %v", active)
	}
}

// The admin-token-file is made when missing, registered, and accepted;
// started again, source keeps the same token.
func TestAdminTokenFile(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	file := filepath.Join(t.TempDir(), "secrets", "admin-token")
	cfg := source.Config{Settings: servicekit.Settings{DataDir: t.TempDir(), DatabaseURL: sqldbtest.URL(t)}, AdminTokenFile: file}
	p := servicekittest.Start(t, ns.URL, servicekittest.Options{NoWait: true}, source.Module(cfg))
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	servicekittest.Producers(t, js, "build", "test", "release")
	p.WaitReady(t)
	var data []byte
	var info os.FileInfo
	servicekittest.Eventually(t, "the admin-token-file is made", func() bool {
		var err error
		data, err = os.ReadFile(file)
		return err == nil && len(data) > 0
	})
	info, err = os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token-file mode: %v %v", info, err)
	}
	secret := strings.TrimSpace(string(data))
	admin := sourcev1connect.NewAccessServiceClient(p.ClientWith(secret), p.URL)
	servicekittest.Eventually(t, "the admin token works", func() bool {
		me, err := admin.WhoAmI(context.Background(), &sourcev1.WhoAmIRequest{})
		return err == nil && me.GetRole() == authv1.Role_ROLE_ADMIN
	})

	if err := os.WriteFile(file, []byte("not a token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := source.EnsureAdminTokenFile(file); err == nil || !strings.Contains(err.Error(), "admin-token-file") {
		t.Errorf("a file without a token: %v", err)
	}
}
