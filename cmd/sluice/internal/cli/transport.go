package cli

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// plainHTTPHint is what a call refused for plain http:// says to do.
const plainHTTPHint = "use the platform's https:// URL (--ca-file or $SLUICE_CA_FILE for its CA), or allow it with --allow-plain-http ($SLUICE_ALLOW_PLAIN_HTTP=1)"

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
