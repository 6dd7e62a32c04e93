package auth_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natstest"
	"github.com/sluicehq/sluice/platform/rpcserver"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// whoami answers WhoAmI with the caller's name: the least a handler does.
type whoami struct {
	sourcev1connect.UnimplementedAccessServiceHandler
}

func (whoami) WhoAmI(ctx context.Context, _ *sourcev1.WhoAmIRequest) (*sourcev1.WhoAmIResponse, error) {
	id, _ := auth.FromContext(ctx)
	return &sourcev1.WhoAmIResponse{Name: id.Name}, nil
}

// openGuard admits everyone as an unlimited admin: the handler chain
// without authentication, for comparison.
type openGuard struct{}

func (openGuard) Authenticate(string) (auth.Identity, error) {
	return auth.Identity{Kind: auth.KindUser, Name: "anyone", Role: 3}, nil
}

// BenchmarkAuthorization measures a Connect call over loopback HTTP with
// the full interceptor chain, once with the Guard checking a real token
// against a Verifier that knows 1000 tokens, once with a Guard that
// admits everyone; it reports the p50 and p99 latency of one call.
func BenchmarkAuthorization(b *testing.B) {
	ns := natstest.Start(b)
	js, err := jetstream.New(ns.Connect(b))
	if err != nil {
		b.Fatal(err)
	}
	tokens, err := js.CreateKeyValue(b.Context(), jetstream.KeyValueConfig{Bucket: auth.TokensBucket})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.CreateKeyValue(b.Context(), jetstream.KeyValueConfig{Bucket: auth.ServicesBucket}); err != nil {
		b.Fatal(err)
	}
	var secret string
	for range 1000 {
		id, s := auth.NewUserToken()
		put(b, tokens, id, auth.TokenRecord{ID: id, Name: "bench", Role: "viewer", Hash: auth.Hash(s)})
		secret = s
	}
	log := slog.New(slog.DiscardHandler)
	v := auth.NewVerifier(log)
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { _ = v.Run(ctx, js); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	eventually(b, "the tokens are loaded", func() bool { _, err := v.Authenticate(secret); return err == nil })

	for _, tc := range []struct {
		name  string
		authn auth.Authenticator
	}{{"without-auth", openGuard{}}, {"with-auth", v}} {
		b.Run(tc.name, func(b *testing.B) {
			path, h := sourcev1connect.NewAccessServiceHandler(whoami{}, rpcserver.HandlerOptions(log, auth.NewGuard(tc.authn, log), audit.NewRecorder("source", nil, nil, log))...)
			mux := http.NewServeMux()
			mux.Handle(path, h)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			client := sourcev1connect.NewAccessServiceClient(&http.Client{Transport: auth.WithSecret(srv.Client().Transport, func() string { return secret })}, srv.URL)
			took := make([]time.Duration, 0, b.N)
			for b.Loop() {
				start := time.Now()
				if _, err := client.WhoAmI(b.Context(), &sourcev1.WhoAmIRequest{}); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
		})
	}
}
