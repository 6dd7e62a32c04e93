package tlsconfig_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/tlsconfig"
)

type sentTransport struct{ sent int }

func (s *sentTransport) RoundTrip(*http.Request) (*http.Response, error) {
	s.sent++
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody}, nil
}

func TestGuardPlainHTTP(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url           string
		token, body   bool
		allowed, sent bool
	}{
		{url: "http://source:8081/x", token: true, sent: false},
		{url: "http://10.0.0.7:8081/x", body: true, sent: false},
		{url: "http://source:8081/x", token: true, allowed: true, sent: true},
		{url: "http://source:8081/healthz", sent: true}, // nothing to protect
		{url: "http://127.0.0.1:8081/x", token: true, body: true, sent: true},
		{url: "http://[::1]:8081/x", token: true, sent: true},
		{url: "http://localhost:8081/x", token: true, sent: true},
		{url: "http://api.localhost./x", token: true, sent: true},
		{url: "http://localhost.example.com/x", token: true, sent: false},
		{url: "http://127.0.0.1.nip.io/x", token: true, sent: false},
		{url: "https://source:8081/x", token: true, body: true, sent: true},
	} {
		next := &sentTransport{}
		allowed := tc.allowed
		g := tlsconfig.GuardPlainHTTP(next, "use https", func() bool { return allowed })
		var body *strings.Reader
		method := http.MethodGet
		if tc.body {
			body, method = strings.NewReader("{}"), http.MethodPost
		}
		var req *http.Request
		var err error
		if body != nil {
			req, err = http.NewRequestWithContext(t.Context(), method, tc.url, body)
		} else {
			req, err = http.NewRequestWithContext(t.Context(), method, tc.url, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if tc.token {
			req.Header.Set("Authorization", "Bearer x")
		}
		resp, err := g.RoundTrip(req)
		if resp != nil {
			_ = resp.Body.Close()
		}
		if sent := next.sent > 0; sent != tc.sent {
			t.Errorf("%+v: sent %v", tc, sent)
		}
		var plain *tlsconfig.PlainHTTPError
		if !tc.sent && (!errors.As(err, &plain) || !strings.Contains(err.Error(), "use https")) {
			t.Errorf("%+v: err %v, want a PlainHTTPError with the hint", tc, err)
		}
	}
}
