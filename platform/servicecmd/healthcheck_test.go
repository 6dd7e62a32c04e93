package servicecmd

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
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
		if got, err := readyzURL(addr); err != nil || got != want {
			t.Errorf("readyzURL(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
	for _, addr := range []string{"8082", "127.0.0.1:0", "127.0.0.1:"} {
		if got, err := readyzURL(addr); err == nil {
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
