package servicecmd

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

func TestReadyzURL(t *testing.T) {
	for addr, want := range map[string]string{
		"0.0.0.0:8082":   "http://127.0.0.1:8082/readyz",
		":8083":          "http://127.0.0.1:8083/readyz",
		"[::]:8084":      "http://127.0.0.1:8084/readyz",
		"127.0.0.1:8085": "http://127.0.0.1:8085/readyz",
		"[::1]:8081":     "http://[::1]:8081/readyz",
		"build:8082":     "http://build:8082/readyz",
	} {
		if got, err := readyzURL(addr, false); err != nil || got != want {
			t.Errorf("readyzURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	if got, _ := readyzURL("0.0.0.0:8082", true); got != "https://127.0.0.1:8082/readyz" {
		t.Errorf("readyzURL with TLS = %q", got)
	}
	for _, addr := range []string{"8082", "127.0.0.1:0", "127.0.0.1:"} {
		if got, err := readyzURL(addr, false); err == nil {
			t.Errorf("readyzURL(%q) = %q, want an error", addr, got)
		}
	}
}

// runHealthcheck runs `sluice-build healthcheck` with args and returns its
// exit code, stdout and stderr.
func runHealthcheck(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run[fakeConfig](command("v1", ""), append([]string{HealthcheckCommand}, args...), &out, &errOut, os.LookupEnv)
	return code, out.String(), errOut.String()
}

func TestHealthcheck(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("nats: streams not applied yet\ndb: migrating\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	code, out, stderr := runHealthcheck(t, "--addr", addr, "--workers", "2")
	if code != 0 || !strings.Contains(out, "/readyz ready") || stderr != "" {
		t.Fatalf("ready: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	ready.Store(false)
	code, _, stderr = runHealthcheck(t, "--addr", addr)
	want := "sluice-build healthcheck: not ready: 503 Service Unavailable: nats: streams not applied yet; db: migrating\n"
	if code != 1 || stderr != want {
		t.Fatalf("not ready: exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}

	// The address comes from the same variable as the server's.
	ready.Store(true)
	_, port, _ := net.SplitHostPort(addr)
	t.Setenv("SLUICE_BUILD_ADDR", "0.0.0.0:"+port)
	if code, out, stderr := runHealthcheck(t); code != 0 {
		t.Fatalf("from $SLUICE_BUILD_ADDR: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestHealthcheckFailures(t *testing.T) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()
	code, _, stderr := runHealthcheck(t, "--addr", closed)
	if code != 1 || !strings.HasPrefix(stderr, "sluice-build healthcheck: not reachable: ") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("nothing listening: exit %d, stderr %q", code, stderr)
	}
	// Docker reserves exit code 2: a bad flag is unhealthy too.
	if code, _, stderr := runHealthcheck(t, "--workers", "lots"); code != 1 || !strings.Contains(stderr, "sluice-build healthcheck: ") {
		t.Fatalf("bad flag: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runHealthcheck(t, "--addr", "127.0.0.1:0"); code != 1 || !strings.Contains(stderr, "no fixed port") {
		t.Fatalf("port 0: exit %d, stderr %q", code, stderr)
	}
}

// A service that serves TLS is asked over https, with the same settings:
// its own certificate is trusted whatever names it has (the healthcheck
// asks 127.0.0.1), and a server with another certificate is not.
func TestHealthcheckOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := devcerts.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(name string) (addr, certFile, keyFile string) {
		pair, err := ca.Issue(name + ".sluice.example")
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile, err = pair.WriteFiles(dir, name, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := tlsconfig.LoadKeyPair(certFile, keyFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv := rpcserver.Config{Addr: "127.0.0.1:0", TLS: keys}
		s, err := rpcserver.New(srv, slog.New(slog.DiscardHandler), rpcserver.NewReadiness(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Stop(context.Background()) })
		return s.Addr(), certFile, keyFile
	}
	addr, certFile, keyFile := serve("build")
	code, out, stderr := runHealthcheck(t, "--addr", addr, "--tls-cert-file", certFile, "--tls-key-file", keyFile)
	if code != 0 || !strings.Contains(out, "https://"+addr+"/readyz ready") {
		t.Fatalf("over TLS: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// Plain HTTP to it is not ready.
	if code, _, _ := runHealthcheck(t, "--addr", addr); code != 1 {
		t.Fatalf("plain http to a TLS listener: exit %d", code)
	}
	// Another server's certificate, from a CA not trusted, is refused.
	other, _, _ := serve("other")
	code, _, stderr = runHealthcheck(t, "--addr", other, "--tls-cert-file", certFile, "--tls-key-file", keyFile)
	if code != 1 || !strings.Contains(stderr, "certificate") {
		t.Fatalf("another certificate: exit %d, stderr %q", code, stderr)
	}
	// With the CA trusted, it is the CA's to vouch for the name, and it
	// does not name 127.0.0.1.
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runHealthcheck(t, "--addr", other, "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-file", caFile)
	if code != 1 || !strings.Contains(stderr, "127.0.0.1") {
		t.Fatalf("a name the certificate lacks: exit %d, stderr %q", code, stderr)
	}
	// One setting of the pair alone is refused.
	if code, _, stderr := runHealthcheck(t, "--addr", addr, "--tls-cert-file", certFile); code != 1 || !strings.Contains(stderr, "tls-key-file") {
		t.Fatalf("cert without key: exit %d, stderr %q", code, stderr)
	}
}
