package tlsconfig

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// IsLoopbackHost says whether host (a name or an address, without the
// port) is this machine: localhost or a loopback address. Names are not
// resolved: a name that only resolves to loopback is not loopback here.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// PlainText says whether a credential sent to u crosses the network
// unencrypted: an http:// URL to a host that is not loopback.
func PlainText(u *url.URL) bool {
	return u.Scheme == "http" && !IsLoopbackHost(u.Hostname())
}

// PlainHTTPError is a request refused because it would send a credential
// in plain text across the network.
type PlainHTTPError struct {
	// Host is where the request was going; Hint says how to do it right.
	Host, Hint string
}

func (e *PlainHTTPError) Error() string {
	return fmt.Sprintf("refusing to send a credential over plain http:// to %s, where anyone on the network path can read it: %s", e.Host, e.Hint)
}

// GuardPlainHTTP returns next refusing, with a *PlainHTTPError carrying
// hint, every request with an Authorization header or a body (a Connect
// call, which may carry a secret even without a token) that PlainText
// says would cross the network unencrypted, unless allowed() says so.
func GuardPlainHTTP(next http.RoundTripper, hint string, allowed func() bool) http.RoundTripper {
	return plainHTTPGuard{next: next, hint: hint, allowed: allowed}
}

type plainHTTPGuard struct {
	next    http.RoundTripper
	hint    string
	allowed func() bool
}

func (g plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	carries := req.Header.Get("Authorization") != "" || (req.Body != nil && req.Body != http.NoBody)
	if carries && PlainText(req.URL) && !g.allowed() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, &PlainHTTPError{Host: req.URL.Host, Hint: g.hint}
	}
	return g.next.RoundTrip(req)
}
