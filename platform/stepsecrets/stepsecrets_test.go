package stepsecrets_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/stepsecrets"
	"github.com/sluicehq/sluice/platform/tlsconfig"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource answers ResolveSecrets.
type fakeSource struct {
	sourcev1connect.UnimplementedSecretServiceHandler
}

func (fakeSource) ResolveSecrets(_ context.Context, req *sourcev1.ResolveSecretsRequest) (*sourcev1.ResolveSecretsResponse, error) {
	values := map[string]string{}
	for _, n := range req.GetNames() {
		values[n] = "value-of-" + n
	}
	return &sourcev1.ResolveSecretsResponse{Values: values}, nil
}

// The resolver asks a source that serves https, trusting the CA the
// process trusts and sending the service's identity.
func TestResolveOverHTTPS(t *testing.T) {
	t.Parallel()
	certs, err := devcerts.WriteSet(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tlsconfig.LoadKeyPair(certs.CertFile, certs.KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := auth.NewServiceIdentity("build")
	mux := http.NewServeMux()
	path, handler := sourcev1connect.NewSecretServiceHandler(fakeSource{})
	// Only the build service's identity is let through.
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+id.Secret() {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		handler.ServeHTTP(w, r)
	}))
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.ServerConfig(keys))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	sourceURL := "https://" + ln.Addr().String()

	trust, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: certs.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	tr := trust.Transport()
	t.Cleanup(tr.CloseIdleConnections)
	values, err := stepsecrets.NewResolver("build", sourceURL, id.Transport(tr)).Resolve(t.Context(), "run-1", []string{"TOKEN"})
	if err != nil {
		t.Fatalf("over https with the CA: %v", err)
	}
	if got := values.Env(nil, map[string]string{"T": "TOKEN"})["T"]; got != "value-of-TOKEN" {
		t.Fatalf("T = %q", got)
	}

	// Without the CA the call fails, and it is an error the stage retries
	// (the operator can mend it), not one that fails the run at once.
	system := (*tlsconfig.Client)(nil).Transport()
	t.Cleanup(system.CloseIdleConnections)
	_, err = stepsecrets.NewResolver("build", sourceURL, id.Transport(system)).Resolve(t.Context(), "run-1", []string{"TOKEN"})
	if err == nil || errors.Is(err, stepsecrets.ErrUnresolvable) {
		t.Fatalf("without the CA: %v, want a retryable error", err)
	}
	var verify *tls.CertificateVerificationError
	if !errors.As(err, &verify) {
		t.Fatalf("without the CA: %v, want a certificate verification error", err)
	}
}

func TestCheckSourceURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url             string
		required, plain bool
		want            string
	}{
		{url: "", required: false},
		{url: "", required: true, want: "source-url is required"},
		{url: "ftp://source", want: "not an http:// or https:// URL"},
		{url: "http://127.0.0.1:8081"},
		{url: "https://source:8081"},
		{url: "http://source:8081", want: "plain http:// to another machine"},
		{url: "http://source:8081", plain: true},
	} {
		err := stepsecrets.CheckSourceURL(tc.url, tc.required, tc.plain)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v", tc, err)
		}
	}
}
