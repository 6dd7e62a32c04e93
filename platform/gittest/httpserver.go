package gittest

import (
	"crypto/subtle"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// HTTPServer serves repositories over git's smart HTTP protocol (the git
// binary's http-backend) on 127.0.0.1, and only to requests with HTTP basic
// authentication as Username and Password (any request when both are
// empty).
type HTTPServer struct {
	// URL is the server's root: a repository Serve was given is at
	// URL + "/" + its directory's name.
	URL      string
	Username string
	Password string

	refused  atomic.Int64
	accepted atomic.Int64
}

// ServeHTTP serves the repositories in root (each a directory of it, bare or
// a working copy) until the test ends. The git binary must be installed;
// the test is skipped when it is not.
func ServeHTTP(t testing.TB, root, username, password string) *HTTPServer {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed: no http-backend to serve repositories with")
	}
	out, err := exec.CommandContext(t.Context(), gitBin, "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + t.TempDir()},
	}
	s := &HTTPServer{Username: username, Password: password}
	// httptest listens on 127.0.0.1 only.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		open := s.Username == "" && s.Password == ""
		if !open && !ok || subtle.ConstantTimeCompare([]byte(user), []byte(s.Username)) != 1 || subtle.ConstantTimeCompare([]byte(pass), []byte(s.Password)) != 1 {
			s.refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		s.accepted.Add(1)
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Refused counts the requests refused for want of the credential.
func (s *HTTPServer) Refused() int64 { return s.refused.Load() }

// Accepted counts the requests served.
func (s *HTTPServer) Accepted() int64 { return s.accepted.Load() }
