package allinone_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/cmd/sluice/internal/allinone"
	"github.com/sluicehq/sluice/platform/devcerts"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// `sluice up` with the operator's certificate serves https only, and talks
// to itself over it even though the certificate does not name 127.0.0.1
// (it trusts its own certificate).
func TestUpServesTLS(t *testing.T) {
	dataDir := t.TempDir()
	certs, err := devcerts.WriteSet(t.TempDir(), "ci.sluice.example")
	if err != nil {
		t.Fatal(err)
	}
	p := startPlatform(t, dataDir, func(o *allinone.Options) {
		o.Process.TLSCertFile, o.Process.TLSKeyFile = certs.CertFile, certs.KeyFile
	})
	addr := strings.TrimPrefix(p.URL, "https://")
	if !strings.HasPrefix(p.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s", p.URL)
	}
	// Start waited for the admin token over https; the same client lists.
	if _, err := sourcev1connect.NewSourceServiceClient(p.Client(), p.URL).ListRepositories(t.Context(), &sourcev1.ListRepositoriesRequest{}); err != nil {
		t.Fatalf("over https: %v", err)
	}
	// Plain http is not served.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/readyz", nil)
	plain := &http.Transport{}
	defer plain.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: plain}).Do(req); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain http answered 200")
		}
	}
	// Another client, without the CA, does not trust the certificate.
	sys := &http.Transport{}
	defer sys.CloseIdleConnections()
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL+"/readyz", nil)
	if resp, err := (&http.Client{Transport: sys}).Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatal("a client without the CA trusted the certificate")
	}
}
