package auth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/platform/auth"
)

// A server that redirects a call does not get the credential sent on:
// not to another host, not even to itself.
func TestWithSecretDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var leaked atomic.Pointer[string]
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		leaked.Store(&got)
	}))
	defer elsewhere.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/collect", http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()
	client := &http.Client{Transport: auth.WithSecret(nil, func() string { return "sluice_x_canary" })}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, redirecting.URL+"/sluice.source.v1.SourceService/ListRepositories", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("the redirect was followed")
	}
	if !strings.Contains(err.Error(), "does not follow redirects") {
		t.Errorf("error %q does not say why", err)
	}
	if got := leaked.Load(); got != nil {
		t.Errorf("the other host was called, with Authorization %q", *got)
	}
}
