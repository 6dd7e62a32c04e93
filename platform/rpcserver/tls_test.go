package rpcserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"

	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// tlsServer starts a server with a certificate for 127.0.0.1 issued by a
// CA of the test's own; it returns the server and the CA bundle's file.
func tlsServer(t *testing.T, log *slog.Logger) (*rpcserver.Server, string) {
	t.Helper()
	set, err := devcerts.WriteSet(t.TempDir(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tlsconfig.LoadKeyPair(set.CertFile, set.KeyFile, log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rpcserver.New(rpcserver.Config{Addr: "127.0.0.1:0", TLS: keys}, log, rpcserver.NewReadiness(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s, set.CAFile
}

func TestServesTLSToClientsThatTrustItsCA(t *testing.T) {
	t.Parallel()
	s, caFile := tlsServer(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s is not https", s.URL())
	}
	trusting, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	tr := trusting.Transport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+"/readyz", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("a client with the CA: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("a client with the CA: %s %s, TLS %+v", resp.Status, resp.Proto, resp.TLS)
	}

	// gRPC (h2 over TLS): server reflection lists the health service.
	stream := grpcreflect.NewClient(&http.Client{Transport: tr}, s.URL(), connect.WithGRPC()).NewStream(t.Context())
	names, err := stream.ListServices()
	_, _ = stream.Close()
	if err != nil || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Fatalf("gRPC over TLS: %v, %v", names, err)
	}

	// The system's roots do not know the test's CA.
	untrusting, err := tlsconfig.NewClient(tlsconfig.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	utr := untrusting.Transport()
	defer utr.CloseIdleConnections()
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+"/readyz", nil)
	resp, err = (&http.Client{Transport: utr}).Do(req)
	var unknown x509.UnknownAuthorityError
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("a client without the CA connected")
	}
	if !errors.As(err, &unknown) {
		t.Fatalf("a client without the CA: %v, want an unknown authority", err)
	}
}

func TestPlainHTTPToATLSListenerFails(t *testing.T) {
	t.Parallel()
	s, _ := tlsServer(t, slog.New(slog.NewTextHandler(io.Discard, nil)))
	plain := &http.Transport{}
	defer plain.CloseIdleConnections()
	url := "http://" + s.Addr() + "/readyz"
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: plain}).Do(req)
	if err != nil {
		return
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	// Go's TLS server answers a plain request with a 400 that says so.
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Fatalf("plain HTTP to the TLS listener: %s %q", resp.Status, body)
	}
}

func TestWarnsWhenListeningWithoutTLSBeyondLoopback(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		warn bool
	}{{"127.0.0.1:0", false}, {"0.0.0.0:0", true}} {
		var logs bytes.Buffer
		ln, err := rpcserver.Listen(t.Context(), slog.New(slog.NewTextHandler(&logs, nil)), tc.addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = ln.Close()
		if got := strings.Contains(logs.String(), "without TLS"); got != tc.warn {
			t.Errorf("listen on %s: warned %v, want %v:\n%s", tc.addr, got, tc.warn, logs.String())
		}
	}
	// With TLS, no warning even on every address.
	var logs bytes.Buffer
	set, err := devcerts.WriteSet(t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tlsconfig.LoadKeyPair(set.CertFile, set.KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := rpcserver.Listen(t.Context(), slog.New(slog.NewTextHandler(&logs, nil)), "0.0.0.0:0", keys)
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
	if strings.Contains(logs.String(), "without TLS") {
		t.Errorf("warned with TLS:\n%s", logs.String())
	}
}
