package egress_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/egress"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const setting = "allow-egress ($SLUICE_TEST_ALLOW_EGRESS)"

func policy(t *testing.T, entries ...string) *egress.Policy {
	t.Helper()
	p, err := egress.New(setting, entries)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// refused fails the test unless err is a refusal of target that names the
// setting.
func refused(t *testing.T, err error, target string) {
	t.Helper()
	var re *egress.RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *egress.RefusedError", err)
	}
	if re.Target != target || !strings.Contains(err.Error(), setting) {
		t.Fatalf("refusal = %q (target %q), want one of %s naming %s", err, re.Target, target, setting)
	}
}

// Each refused range, and its IPv4-mapped form, is refused by default and
// allowed by its shortcut or its prefix. No connection is made: the
// addresses outside loopback are checked, never dialed.
func TestCheckRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr     string
		shortcut string
	}{
		{"127.0.0.1", egress.Loopback},
		{"127.255.0.9", egress.Loopback},
		{"::1", egress.Loopback},
		{"169.254.169.254", egress.LinkLocal},
		{"fe80::1", egress.LinkLocal},
		{"10.1.2.3", egress.Private},
		{"172.16.0.1", egress.Private},
		{"172.31.255.254", egress.Private},
		{"192.168.1.1", egress.Private},
		{"100.64.0.1", egress.Private},
		{"fd12:3456::1", egress.Private},
		{"0.0.0.0", ""},
		{"::", ""},
		{"224.0.0.1", ""},
		{"ff02::1", ""},
		{"255.255.255.255", ""},
	}
	for _, tc := range tests {
		addr := netip.MustParseAddr(tc.addr)
		forms := []netip.Addr{addr}
		if addr.Is4() {
			forms = append(forms, netip.AddrFrom16(addr.As16())) // ::ffff:a.b.c.d
		}
		for _, a := range forms {
			refused(t, policy(t).Check(a), addr.String())
			refused(t, policy(t, "203.0.113.0/24").Check(a), addr.String())
			if tc.shortcut != "" {
				if err := policy(t, tc.shortcut).Check(a); err != nil {
					t.Errorf("%s allowed by %q: %v", a, tc.shortcut, err)
				}
			}
			if err := policy(t, addr.String()).Check(a); err != nil {
				t.Errorf("%s allowed by its own address: %v", a, err)
			}
			if err := policy(t, netip.PrefixFrom(addr, addr.BitLen()-1).Masked().String()).Check(a); err != nil {
				t.Errorf("%s allowed by its prefix: %v", a, err)
			}
		}
	}
	// An allow-list entry in IPv4-mapped form allows the IPv4 address.
	if err := policy(t, "::ffff:10.0.0.0/104").Check(netip.MustParseAddr("10.9.9.9")); err != nil {
		t.Errorf("::ffff:10.0.0.0/104 does not allow 10.9.9.9: %v", err)
	}
	// A nil policy is the default one.
	var none *egress.Policy
	if err := none.Check(netip.MustParseAddr("127.0.0.1")); err == nil {
		t.Error("a nil policy allows loopback")
	}
	// One private range allowed is not the others.
	refused(t, policy(t, "10.0.0.0/8").Check(netip.MustParseAddr("192.168.0.1")), "192.168.0.1")
	// Public addresses are allowed by default.
	for _, a := range []string{"8.8.8.8", "2001:4860:4860::8888", "172.32.0.1", "100.128.0.1"} {
		if err := policy(t).Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("public %s: %v", a, err)
		}
	}
}

func TestNewRefusesBadEntries(t *testing.T) {
	t.Parallel()
	for _, entries := range [][]string{{"bogus"}, {"10.0.0.0/33"}, {"loopback", "300.1.1.1"}, {"::ffff:0:0/90"}} {
		if _, err := egress.New(setting, entries); err == nil {
			t.Errorf("New(%q) accepted", entries)
		}
	}
	p := policy(t, " Loopback ", "", "local", "10.0.0.0/8")
	if got := strings.Join(p.Entries(), ","); got != "Loopback,local,10.0.0.0/8" {
		t.Errorf("Entries = %q", got)
	}
}

func TestLocalAndSchemes(t *testing.T) {
	t.Parallel()
	refused(t, policy(t).CheckLocal("/srv/repo"), "/srv/repo")
	if err := policy(t, egress.Local).CheckLocal("/srv/repo"); err != nil {
		t.Errorf("local allowed: %v", err)
	}
	for _, scheme := range []string{"ssh", "git"} {
		refused(t, policy(t, "loopback", "local").CheckScheme(scheme), scheme+":// repository URLs")
		if err := policy(t, scheme).CheckScheme(scheme); err != nil {
			t.Errorf("%s allowed: %v", scheme, err)
		}
	}
	for _, scheme := range []string{"http", "https"} {
		if err := policy(t).CheckScheme(scheme); err != nil {
			t.Errorf("%s: %v", scheme, err)
		}
	}
}

// serve serves h on addr (a loopback address and port 0), or returns nil
// when it cannot listen there.
func serve(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", addr)
	if err != nil {
		return nil
	}
	srv := httptest.NewUnstartedServer(h)
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// listen is serve, skipping the test when it cannot listen.
func listen(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	srv := serve(t, addr, h)
	if srv == nil {
		t.Skipf("cannot listen on %s", addr)
	}
	return srv
}

func port(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ok(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
}

func get(t *testing.T, c *http.Client, url string) (string, error) {
	t.Helper()
	t.Cleanup(c.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return string(b), err
}

// Loopback servers, over IPv4, IPv6, an IPv4-mapped address and the name
// localhost, are refused by the client unless allowed.
func TestClientDialsLoopbackOnlyWhenAllowed(t *testing.T) {
	t.Parallel()
	v4 := listen(t, "127.0.0.1:0", ok("v4"))
	tests := []struct {
		url, target string
	}{
		{v4.URL, "127.0.0.1"},
		{"http://[::ffff:127.0.0.1]:" + port(t, v4), "127.0.0.1"},
		{"http://localhost:" + port(t, v4), ""}, // ::1 or 127.0.0.1, whichever is tried first
	}
	if v6 := serve(t, "[::1]:0", ok("v6")); v6 != nil {
		tests = append(tests, struct{ url, target string }{v6.URL, "::1"})
	}
	for _, tc := range tests {
		_, err := get(t, policy(t).Client(), tc.url)
		var re *egress.RefusedError
		if !errors.As(err, &re) || (tc.target != "" && re.Target != tc.target) {
			t.Errorf("GET %s with the default policy: %v, want refused (%s)", tc.url, err, tc.target)
		}
		if body, err := get(t, policy(t, egress.Loopback).Client(), tc.url); err != nil || body == "" {
			t.Errorf("GET %s with loopback allowed: %q, %v", tc.url, body, err)
		}
	}
}

// Every address a name resolves to is checked on its own: with only
// 127.0.0.1 allowed, localhost's ::1 (if it resolves to it) is refused and
// 127.0.0.1 is reached.
func TestEachResolvedAddressChecked(t *testing.T) {
	t.Parallel()
	srv := listen(t, "127.0.0.1:0", ok("v4"))
	body, err := get(t, policy(t, "127.0.0.1/32").Client(), "http://localhost:"+port(t, srv))
	if err != nil || body != "v4" {
		t.Fatalf("GET localhost with 127.0.0.1 allowed: %q, %v", body, err)
	}
	conn, err := policy(t, "127.0.0.1/32").Dialer().DialContext(t.Context(), "tcp", "[::1]:"+port(t, srv))
	if err == nil {
		_ = conn.Close()
		t.Fatal("::1 dialed with only 127.0.0.1 allowed")
	}
	refused(t, err, "::1")
}

// A redirect from an allowed server to a refused address is refused at
// the hop's dial; the second server never sees a request.
func TestRedirectHopChecked(t *testing.T) {
	t.Parallel()
	hits := make(chan struct{}, 10)
	target := listen(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits <- struct{}{}
		_, _ = io.WriteString(w, "target")
	}))
	first := listen(t, "127.0.0.2:0", http.RedirectHandler(target.URL+"/", http.StatusFound))

	_, err := get(t, policy(t, "127.0.0.2/32").Client(), first.URL)
	refused(t, err, "127.0.0.1")
	if len(hits) != 0 {
		t.Fatal("the redirect's target was reached")
	}
	body, err := get(t, policy(t, "127.0.0.2/32", "127.0.0.1").Client(), first.URL)
	if err != nil || body != "target" {
		t.Fatalf("redirect with both allowed: %q, %v", body, err)
	}
}

// The redirect limit holds.
func TestRedirectLimit(t *testing.T) {
	t.Parallel()
	var srv *httptest.Server
	srv = listen(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL+r.URL.Path+"x", http.StatusFound)
	}))
	_, err := get(t, policy(t, egress.Loopback).Client(), srv.URL+"/")
	if err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("err = %v, want the redirect limit", err)
	}
}

// ContextTransport checks against the policy each request's context
// carries, and refuses with the default policy when it carries none.
func TestContextTransport(t *testing.T) {
	t.Parallel()
	srv := listen(t, "127.0.0.1:0", ok("ctx"))
	c := &http.Client{Transport: egress.ContextTransport()}
	t.Cleanup(c.CloseIdleConnections)
	do := func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Do(req)
		if err == nil {
			_ = res.Body.Close()
		}
		return err
	}
	if err := do(t.Context()); !errors.As(err, new(*egress.RefusedError)) {
		t.Fatalf("no policy in the context: %v, want refused", err)
	}
	if err := do(egress.NewContext(t.Context(), policy(t, egress.Loopback))); err != nil {
		t.Fatalf("with loopback allowed: %v", err)
	}
	// The connection of the allowed request is not reused for the next.
	refused(t, do(egress.NewContext(t.Context(), policy(t))), "127.0.0.1")
}
