package cli

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// plainHTTPError is a call refused because it would send a credential in
// plain text across the network.
type plainHTTPError struct{ host string }

func (e *plainHTTPError) Error() string {
	return fmt.Sprintf("refusing to send a token over plain http:// to %s, where anyone on the network path can read it: "+
		"use the platform's https:// URL (--ca-file or $SLUICE_CA_FILE for its CA), or allow it with --allow-plain-http ($SLUICE_ALLOW_PLAIN_HTTP=1)", e.host)
}

// isLoopback says whether host (a name or an address, without the port)
// is this machine: localhost or a loopback address. Names are not
// resolved.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guardedTransport refuses a request that carries an Authorization header
// over http:// to a host that is not loopback, unless allowed says so.
type guardedTransport struct {
	next    http.RoundTripper
	allowed func() bool
}

func (g guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && req.Header.Get("Authorization") != "" && !isLoopback(req.URL.Hostname()) && !g.allowed() {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, &plainHTTPError{host: req.URL.Host}
	}
	return g.next.RoundTrip(req)
}

// tlsTransport is the CLI's own transport, made at its first call (once
// the flags are parsed): it trusts --ca-file's CAs, or the system's roots.
type tlsTransport struct {
	caFile func() string
	once   sync.Once
	t      http.RoundTripper
	err    error
}

func (l *tlsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l.once.Do(func() {
		client, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: l.caFile()})
		if err != nil {
			l.err = fmt.Errorf("--ca-file: %w", err)
			return
		}
		l.t = client.Transport()
	})
	if l.err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, l.err
	}
	return l.t.RoundTrip(req)
}
