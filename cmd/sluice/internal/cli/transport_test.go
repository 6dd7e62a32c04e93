package cli

import (
	"crypto/tls"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/tlsconfig"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// The CLI calls an https:// platform whose certificate its --ca-file (or
// $SLUICE_CA_FILE) vouches for, and refuses one it does not.
func TestHTTPSWithACAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	set, err := devcerts.WriteSet(dir, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	caFile := set.CAFile
	keys, err := tlsconfig.LoadKeyPair(set.CertFile, set.KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{repos: map[string]*sourcev1.Repository{}, runs: map[string]*sourcev1.Run{}}
	src.addRepo(&sourcev1.Repository{Id: "r1", Name: "hello", Url: "/repos/hello", Branch: "main"})
	var sawToken atomic.Bool
	mux := http.NewServeMux()
	path, handler := sourcev1connect.NewSourceServiceHandler(src)
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawToken.Store(r.Header.Get("Authorization") == "Bearer sluice_x_secret")
		handler.ServeHTTP(w, r)
	}))
	// Not httptest's StartTLS: it would serve its own certificate.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsconfig.ServerConfig(keys))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	env := map[string]string{"SLUICE_SERVER": "https://" + ln.Addr().String(), "SLUICE_TOKEN": "sluice_x_secret", "SLUICE_CA_FILE": caFile}
	if r := run(t, env, "repo", "ls"); r.code != 0 || !strings.Contains(r.stdout, "hello") || !sawToken.Load() {
		t.Fatalf("with $SLUICE_CA_FILE: exit %d, stdout %q, stderr %q, token sent %v", r.code, r.stdout, r.stderr, sawToken.Load())
	}
	delete(env, "SLUICE_CA_FILE")
	if r := run(t, env, "repo", "ls", "--ca-file", caFile); r.code != 0 {
		t.Fatalf("with --ca-file: exit %d, stderr %q", r.code, r.stderr)
	}
	r := run(t, env, "repo", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "not trusted") || !strings.Contains(r.stderr, "--ca-file") {
		t.Fatalf("without the CA: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := run(t, env, "repo", "ls", "--ca-file", filepath.Join(dir, "missing.pem")); r.code != 1 || !strings.Contains(r.stderr, "--ca-file") {
		t.Fatalf("a missing CA file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// countingTransport counts the requests that reach the network.
type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, http.ErrHandlerTimeout
}

// A token, or a call without one (whose body may hold a secret), never
// goes over plain http:// to another machine unless the user allows it;
// loopback is this machine.
func TestNoTokenOverPlainHTTPAcrossTheNetwork(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		server  string
		env     map[string]string
		args    []string
		noToken bool
		sent    bool
	}{
		{server: "http://ci.example.com:8080", sent: false},
		{server: "http://ci.example.com:8080", noToken: true, sent: false},
		{server: "http://10.1.2.3:8080", sent: false},
		{server: "http://10.1.2.3:8080", args: []string{"--allow-plain-http"}, sent: true},
		{server: "http://10.1.2.3:8080", env: map[string]string{"SLUICE_ALLOW_PLAIN_HTTP": "1"}, sent: true},
		{server: "http://127.0.0.1:8080", sent: true},
		{server: "http://[::1]:8080", sent: true},
		{server: "http://localhost:8080", sent: true},
		{server: "https://ci.example.com", sent: true},
	} {
		tr := &countingTransport{}
		env := map[string]string{"SLUICE_SERVER": tc.server, "SLUICE_TOKEN": "sluice_x_secret"}
		for k, v := range tc.env {
			env[k] = v
		}
		if tc.noToken {
			delete(env, "SLUICE_TOKEN")
		}
		app := newApp(env, &strings.Builder{}, &strings.Builder{})
		app.HTTPClient = &http.Client{Transport: tr}
		var errOut strings.Builder
		app.Stderr = &errOut
		code := app.Run(t.Context(), append([]string{"repo", "ls"}, tc.args...))
		if sent := tr.n.Load() > 0; sent != tc.sent || code != 1 {
			t.Errorf("%s %v %v: sent %v (want %v), exit %d, stderr %q", tc.server, tc.env, tc.args, sent, tc.sent, code, errOut.String())
		}
		if !tc.sent && !strings.Contains(errOut.String(), "refusing to send a credential over plain http://") {
			t.Errorf("%s: stderr %q does not say why", tc.server, errOut.String())
		}
	}
}
