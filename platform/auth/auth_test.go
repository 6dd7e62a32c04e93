package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natstest"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.KnownLeaks()...)
}

func TestTokenShapes(t *testing.T) {
	t.Parallel()
	id, secret := auth.NewUserToken()
	if auth.TokenID(secret) != id || len(id) != 16 {
		t.Fatalf("id %q, TokenID %q", id, auth.TokenID(secret))
	}
	if err := auth.CheckSecret(secret); err != nil {
		t.Errorf("CheckSecret(user token): %v", err)
	}
	if err := auth.CheckSecret(auth.NewServiceSecret("build")); err != nil {
		t.Errorf("CheckSecret(service secret): %v", err)
	}
	for _, bad := range []string{"", "hunter2", "sluice_short_x", strings.Repeat("x", auth.MaxSecretLen+1)} {
		if auth.CheckSecret(bad) == nil {
			t.Errorf("CheckSecret(%q) accepted it", bad)
		}
	}
	_, other := auth.NewUserToken()
	if other == secret || auth.Hash(other) == auth.Hash(secret) || len(auth.Hash(secret)) != 64 {
		t.Error("two tokens collide, or the hash is not hex SHA-256")
	}
	for _, name := range []string{"viewer", "operator", "admin"} {
		r, err := auth.ParseRole(name)
		if err != nil || auth.RoleName(r) != name {
			t.Errorf("role %s: %v %v", name, r, err)
		}
	}
	if _, err := auth.ParseRole("root"); err == nil {
		t.Error("ParseRole(root) accepted it")
	}
}

func TestRepositoryChecks(t *testing.T) {
	t.Parallel()
	limited := auth.WithIdentity(context.Background(), auth.Identity{Kind: auth.KindUser, TokenID: "t", Name: "ci", Role: authv1.Role_ROLE_VIEWER, Repositories: []string{"a"}})
	if err := auth.CheckRepository(limited, "a"); err != nil {
		t.Errorf("a: %v", err)
	}
	if err := auth.CheckRepository(limited, "b"); !errors.Is(err, apierror.ErrPermissionDenied) {
		t.Errorf("b: %v", err)
	}
	if err := auth.CheckRepository(context.Background(), "a"); !errors.Is(err, apierror.ErrUnauthenticated) {
		t.Errorf("no identity: %v", err)
	}
	service := auth.WithIdentity(context.Background(), auth.Identity{Kind: auth.KindService, Name: "release", Repositories: []string{"a"}})
	if err := auth.CheckRepository(service, "b"); err != nil {
		t.Errorf("a service acts for every repository: %v", err)
	}
	if repos, ok := auth.Repositories(limited); !ok || len(repos) != 1 {
		t.Errorf("Repositories(limited) = %v %v", repos, ok)
	}
	// Without an identity a list shows nothing (an empty list, not "all").
	if repos, ok := auth.Repositories(context.Background()); !ok || repos == nil || len(repos) != 0 {
		t.Errorf("Repositories(no identity) = %#v %v, want an empty list, limited", repos, ok)
	}
}

// The verifier learns tokens and service identities from the buckets, and
// forgets a deleted (revoked) token at once.
func TestVerifierFollowsTheBuckets(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	v := auth.NewVerifier(slog.New(slog.DiscardHandler))
	done := make(chan struct{})
	go func() { _ = v.Run(ctx, js); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	_, secret := auth.NewUserToken()
	if _, err := v.Authenticate(secret); !errors.Is(err, apierror.ErrUnavailable) {
		t.Fatalf("before the buckets exist: %v, want unavailable", err)
	}
	tokens := bucket(t, js, auth.TokensBucket)
	bucket(t, js, auth.ServicesBucket)
	eventually(t, "loaded", func() bool { return v.Ready() == nil })

	put(t, tokens, auth.TokenID(secret), auth.TokenRecord{ID: auth.TokenID(secret), Name: "ci", Role: "operator", Repositories: []string{"a"}, Hash: auth.Hash(secret)})
	eventually(t, "the token is known", func() bool { _, err := v.Authenticate(secret); return err == nil })
	id, _ := v.Authenticate(secret)
	if id.Kind != auth.KindUser || id.Role != authv1.Role_ROLE_OPERATOR || id.Name != "ci" || !id.Limited() || id.AllowsRepository("b") {
		t.Errorf("identity %+v", id)
	}

	if err := tokens.Delete(t.Context(), auth.TokenID(secret)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revoked token is refused", func() bool {
		_, err := v.Authenticate(secret)
		return errors.Is(err, apierror.ErrUnauthenticated)
	})

	_, expired := auth.NewUserToken()
	past := time.Now().Add(-time.Second)
	put(t, tokens, auth.TokenID(expired), auth.TokenRecord{ID: auth.TokenID(expired), Name: "old", Role: "admin", Hash: auth.Hash(expired), ExpiresAt: &past})
	// A record whose key is not its id is ignored: no token by a borrowed key.
	_, borrowed := auth.NewUserToken()
	put(t, tokens, "someone-else", auth.TokenRecord{ID: auth.TokenID(borrowed), Name: "x", Role: "admin", Hash: auth.Hash(borrowed)})

	svc := auth.NewServiceIdentity("release")
	if err := svc.Publish(t.Context(), js); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the service is known", func() bool { _, err := v.Authenticate(svc.Secret()); return err == nil })
	if id, _ := v.Authenticate(svc.Secret()); id.Kind != auth.KindService || id.Name != "release" {
		t.Errorf("service identity %+v", id)
	}
	if _, err := v.Authenticate(expired); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	if _, err := v.Authenticate(borrowed); !errors.Is(err, apierror.ErrUnauthenticated) {
		t.Errorf("record under another key: %v", err)
	}
}

func bucket(t testing.TB, js jetstream.JetStream, name string) jetstream.KeyValue {
	t.Helper()
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: name})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func put(t testing.TB, kv jetstream.KeyValue, key string, rec any) {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), key, b); err != nil {
		t.Fatal(err)
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
