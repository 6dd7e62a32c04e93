package egress_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicehq/sluice/platform/egress"
)

func TestBrief(t *testing.T) {
	t.Parallel()
	refusal := &egress.RefusedError{Target: "10.0.0.7", Kind: "a private address", Allow: `"private"`, Setting: setting}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"a refusal is told whole", &url.Error{Op: "Post", URL: "http://hooks.internal/T0K3N", Err: &net.OpError{Op: "dial", Net: "tcp", Err: refusal}},
			`egress refused: 10.0.0.7 is a private address; to allow it, add "private" to the ` + setting + ` setting`},
		{"no URL, no name server", fmt.Errorf("cannot read repository: %w", &url.Error{Op: "Get", URL: "https://git.example/r?token=s3cr3t",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "git.example", Server: "10.0.0.2:53", IsNotFound: true}}}),
			"cannot read repository: dial tcp: lookup git.example on <address>:53: no such host"},
		{"IPv6 and IPv4 addresses", errors.New("dial tcp [fd00::5]:443 via 192.168.7.7: connection refused at 12:30:45"),
			"dial tcp [<address>]:443 via <address>: connection refused at 12:30:45"},
		{"one line", errors.New("first\nsecond\t\x1b[31mred"), "first second [31mred"},
		{"valid UTF-8", errors.New("bad \xff byte"), "bad \uFFFD byte"},
		{"deadline", fmt.Errorf("fetch: %w", context.DeadlineExceeded), "fetch: context deadline exceeded"},
	}
	for _, tc := range tests {
		got := egress.Brief(tc.err)
		if got.Error() != tc.want {
			t.Errorf("%s: Brief = %q, want %q", tc.name, got, tc.want)
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: Brief does not unwrap to the error", tc.name)
		}
	}
	if egress.Brief(nil) != nil {
		t.Error("Brief(nil) is not nil")
	}
	long := egress.Brief(errors.New(strings.Repeat("é", 1000))).Error()
	if len(long) > egress.MaxBriefLen || !utf8.ValidString(long) || !strings.HasSuffix(long, "…") {
		t.Errorf("long message: %d bytes, valid %v: %q", len(long), utf8.ValidString(long), long)
	}
}
