package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestRoutes(t *testing.T) {
	srv := httptest.NewServer(newHandler("v1.2.3"))
	defer srv.Close()

	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{http.MethodGet, "/", http.StatusOK, "hello from v1.2.3\n"},
		{http.MethodGet, "/healthz", http.StatusOK, "ok"},
		{http.MethodGet, "/nope", http.StatusNotFound, ""},
		{http.MethodPost, "/", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			status, body := do(t, srv.Client(), tt.method, srv.URL+tt.path)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d", status, tt.wantStatus)
			}
			if tt.wantBody != "" && body != tt.wantBody {
				t.Fatalf("body = %q, want %q", body, tt.wantBody)
			}
		})
	}
}

func TestHealthzRecorder(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/healthz", nil)
	newHandler("dev").ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Body.String() != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\"", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type = %q", ct)
	}
}

func TestParseConfig(t *testing.T) {
	env := func(m map[string]string) func(string) string {
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want config
	}{
		{"defaults", nil, nil, config{addr: defaultAddr, version: defaultVersion}},
		{"env", nil, map[string]string{"HELLO_ADDR": "127.0.0.1:9", "HELLO_VERSION": "v2"}, config{addr: "127.0.0.1:9", version: "v2"}},
		{"flags win over env", []string{"-addr", ":1", "-version", "v3"}, map[string]string{"HELLO_ADDR": "127.0.0.1:9", "HELLO_VERSION": "v2"}, config{addr: ":1", version: "v3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConfig(tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("parseConfig = %+v, want %+v", got, tt.want)
			}
		})
	}

	if _, err := parseConfig([]string{"-nope"}, env(nil), io.Discard); err == nil {
		t.Error("unknown flag: want an error")
	}
	if _, err := parseConfig([]string{"extra"}, env(nil), io.Discard); err == nil {
		t.Error("positional argument: want an error")
	}
}

// TestServeGracefulShutdown starts the real server on a free port, makes a
// request, then cancels the context (as SIGTERM does) and waits for serve to
// return cleanly.
func TestServeGracefulShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var logs bytes.Buffer
	addrc := make(chan net.Addr, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- serve(ctx, config{addr: "127.0.0.1:0", version: "test"}, log.New(&logs, "", 0), func(a net.Addr) { addrc <- a })
	}()

	var addr net.Addr
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("serve returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}

	status, body := do(t, http.DefaultClient, http.MethodGet, "http://"+addr.String()+"/")
	if status != http.StatusOK || body != "hello from test\n" {
		t.Fatalf("GET / = %d %q", status, body)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not shut down")
	}
	if !bytes.Contains(logs.Bytes(), []byte("stopped")) {
		t.Errorf("logs do not say the server stopped:\n%s", logs.String())
	}
}

func TestServeListenError(t *testing.T) {
	err := serve(t.Context(), config{addr: "not-an-address", version: "x"}, log.New(io.Discard, "", 0), nil)
	if err == nil {
		t.Fatal("want an error for a bad address")
	}
}

func do(t *testing.T, c *http.Client, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
