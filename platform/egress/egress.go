// Package egress guards the connections Sluice makes to addresses that its
// users chose: webhook subscriptions (notify), verify.http probes (release)
// and repository URLs (source, and the checkouts of build, test and
// release).
//
// A Policy refuses, by default, every address a user should not be able to
// point Sluice at: loopback, unspecified, link-local (with the cloud
// metadata address 169.254.169.254), private (RFC 1918, unique local
// fc00::/7, CGNAT 100.64.0.0/10), multicast, broadcast and reserved ranges,
// and the IPv4-mapped IPv6 forms of all of them. The operator's allow-list
// (the allow-egress setting of every service) opens prefixes of them again.
//
// The check runs at dial time, in the net.Dialer's ControlContext, on the
// address being connected to: after name resolution, for every address a
// name resolves to and for every redirect hop, so neither a name that
// resolves to loopback nor DNS rebinding gets past it. Local repositories
// (paths and file:// URLs) and the ssh:// and git:// protocols, whose dials
// go-git makes where no dialer can be set, are refused unless allowed by
// name.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Shortcuts an allow-list may name besides CIDR prefixes and addresses.
const (
	// Loopback allows 127.0.0.0/8 and ::1.
	Loopback = "loopback"
	// Private allows 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
	// 100.64.0.0/10 (CGNAT) and fc00::/7 (unique local).
	Private = "private"
	// LinkLocal allows 169.254.0.0/16 and fe80::/10, cloud metadata
	// services included.
	LinkLocal = "link-local"
	// Local allows local repositories: paths and file:// URLs, which read
	// the service host's file system.
	Local = "local"
	// SSH allows ssh:// (and scp-like user@host:path) repository URLs, to
	// any address: go-git dials them itself, out of reach of the check.
	SSH = "ssh"
	// Git allows git:// repository URLs, to any address, for the same
	// reason.
	Git = "git"
)

// Shortcuts are the names an allow-list entry may be instead of a prefix.
func Shortcuts() []string { return []string{Loopback, Private, LinkLocal, Local, SSH, Git} }

// Timeouts of the dialer and transports made here. A whole request is
// bounded by its context (or Client's Timeout where the caller sets one).
const (
	DialTimeout         = 10 * time.Second
	TLSHandshakeTimeout = 10 * time.Second
	// MaxRedirects is how many redirects Client follows; each hop is dialed,
	// and so checked, anew.
	MaxRedirects = 5
)

// rangeOf is a range refused by default, with the name errors give it and
// the shortcut (if any) that allows it.
type rangeOf struct {
	prefix   netip.Prefix
	name     string
	shortcut string
}

var denied = []rangeOf{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified", ""},
	{netip.MustParsePrefix("::/128"), "unspecified", ""},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback", Loopback},
	{netip.MustParsePrefix("::1/128"), "loopback", Loopback},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local", LinkLocal},
	{netip.MustParsePrefix("fe80::/10"), "link-local", LinkLocal},
	{netip.MustParsePrefix("10.0.0.0/8"), "private", Private},
	{netip.MustParsePrefix("172.16.0.0/12"), "private", Private},
	{netip.MustParsePrefix("192.168.0.0/16"), "private", Private},
	{netip.MustParsePrefix("100.64.0.0/10"), "private (CGNAT)", Private},
	{netip.MustParsePrefix("fc00::/7"), "private (unique local)", Private},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast", ""},
	{netip.MustParsePrefix("ff00::/8"), "multicast", ""},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast", ""},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved", ""},
}

// Policy is what may be dialed. Its zero value (and a nil *Policy) refuses
// every range above and allows the rest; New adds the operator's
// allow-list. It is immutable and safe for concurrent use.
type Policy struct {
	setting         string
	allowed         []netip.Prefix
	local, ssh, git bool
	entries         []string
}

// New makes the policy that allows what entries name: CIDR prefixes
// ("10.1.0.0/16"), addresses ("10.1.2.3"), and the Shortcuts. setting is
// how refusals name the setting that holds the list (for example
// `allow-egress ($SLUICE_NOTIFY_ALLOW_EGRESS)`).
func New(setting string, entries []string) (*Policy, error) {
	p := &Policy{setting: setting}
	var errs []error
	for _, e := range entries {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		p.entries = append(p.entries, e)
		switch strings.ToLower(e) {
		case Local:
			p.local = true
			continue
		case SSH:
			p.ssh = true
			continue
		case Git:
			p.git = true
			continue
		case Loopback, Private, LinkLocal:
			for _, r := range denied {
				if r.shortcut == strings.ToLower(e) {
					p.allowed = append(p.allowed, r.prefix)
				}
			}
			continue
		}
		prefix, err := parsePrefix(e)
		if err != nil {
			errs = append(errs, fmt.Errorf("%q is neither a CIDR prefix, an address nor one of %s", e, strings.Join(Shortcuts(), ", ")))
			continue
		}
		p.allowed = append(p.allowed, prefix)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// parsePrefix parses a prefix or a single address, IPv4-mapped forms made
// IPv4.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		a = a.Unmap().WithZone("")
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("%s: an IPv4-mapped prefix shorter than /96", s)
		}
		p = netip.PrefixFrom(a.Unmap(), bits)
	}
	return p.Masked(), nil
}

// Entries are the allow-list the policy was made from.
func (p *Policy) Entries() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.entries)
}

func (p *Policy) settingName() string {
	if p == nil || p.setting == "" {
		return "allow-egress"
	}
	return p.setting
}

// Check returns nil when addr may be dialed, else a *RefusedError. An
// IPv4-mapped IPv6 address is checked as the IPv4 address it is.
func (p *Policy) Check(addr netip.Addr) error {
	a := addr.Unmap().WithZone("")
	if !a.IsValid() {
		return &RefusedError{Target: addr.String(), Kind: "an invalid address", Setting: p.settingName()}
	}
	if p != nil {
		for _, allowed := range p.allowed {
			if allowed.Contains(a) {
				return nil
			}
		}
	}
	for _, r := range denied {
		if r.prefix.Contains(a) {
			allow := fmt.Sprintf("%q", netip.PrefixFrom(a, a.BitLen()).String())
			if r.shortcut != "" {
				allow = fmt.Sprintf("%q or %s", r.shortcut, allow)
			}
			return &RefusedError{Target: a.String(), Kind: "a " + r.name + " address", Allow: allow, Setting: p.settingName()}
		}
	}
	return nil
}

// CheckLocal returns nil when the local repository at path may be read,
// else a *RefusedError.
func (p *Policy) CheckLocal(path string) error {
	if p != nil && p.local {
		return nil
	}
	return &RefusedError{Target: path, Kind: "a local repository", Allow: fmt.Sprintf("%q", Local), Setting: p.settingName()}
}

// CheckScheme returns nil when a repository URL of scheme may be fetched:
// http and https always (their dials are checked), ssh and git only when
// allowed by name, as their dials are not. Other schemes are not this
// package's to refuse.
func (p *Policy) CheckScheme(scheme string) error {
	switch scheme {
	case "ssh":
		if p != nil && p.ssh {
			return nil
		}
		return &RefusedError{Target: "ssh:// repository URLs", Kind: "a protocol whose connections cannot be checked", Allow: fmt.Sprintf("%q (to any address)", SSH), Setting: p.settingName()}
	case "git":
		if p != nil && p.git {
			return nil
		}
		return &RefusedError{Target: "git:// repository URLs", Kind: "a protocol whose connections cannot be checked", Allow: fmt.Sprintf("%q (to any address)", Git), Setting: p.settingName()}
	}
	return nil
}

// control is a net.Dialer's ControlContext: it sees the address about to be
// connected to, after resolution, once for each address tried.
func (p *Policy) control(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Target: address, Kind: "not an IP address", Setting: p.settingName()}
	}
	return p.Check(ap.Addr())
}

// Dialer returns a dialer that refuses what p refuses, with DialTimeout.
func (p *Policy) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second, ControlContext: p.control}
}

// Transport returns an HTTP transport whose every connection is dialed
// with Dialer. It uses no proxy: a proxy would be dialed in the target's
// place, and the check would see the proxy's address.
func (p *Policy) Transport() *http.Transport {
	return newTransport(p.Dialer().DialContext)
}

func newTransport(dial func(context.Context, string, string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   TLSHandshakeTimeout,
		ExpectContinueTimeout: time.Second,
	}
}

// Client returns an HTTP client on Transport that follows at most
// MaxRedirects redirects (each hop's connection checked like the first).
// Callers that must not follow redirects set CheckRedirect.
func (p *Policy) Client() *http.Client {
	return &http.Client{Transport: p.Transport(), CheckRedirect: LimitRedirects}
}

// LimitRedirects is an http.Client's CheckRedirect that follows at most
// MaxRedirects redirects, for a client on a transport of its own.
func LimitRedirects(_ *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return fmt.Errorf("stopped after %d redirects", MaxRedirects)
	}
	return nil
}

type contextKey struct{}

// NewContext returns ctx carrying p, for ContextTransport.
func NewContext(ctx context.Context, p *Policy) context.Context {
	return context.WithValue(ctx, contextKey{}, p)
}

// FromContext returns the policy ctx carries, or nil (which refuses every
// range and allows nothing by name).
func FromContext(ctx context.Context) *Policy {
	p, _ := ctx.Value(contextKey{}).(*Policy)
	return p
}

// ContextTransport returns an HTTP transport that checks each connection
// against the policy its request's context carries (NewContext): the
// default policy when it carries none. It is for libraries that take one
// transport for the whole process (go-git's protocol registry); everything
// else uses Policy.Transport.
func ContextTransport() *http.Transport {
	t := newTransport(func(ctx context.Context, network, addr string) (net.Conn, error) {
		return FromContext(ctx).Dialer().DialContext(ctx, network, addr)
	})
	// A kept-alive connection would be reused by a later request to the
	// same host whatever policy that request carries, without a dial.
	t.DisableKeepAlives = true
	return t
}

// RefusedError is a connection, repository or protocol the policy refuses.
// Its message names what was refused, why, and the setting and entry that
// would allow it.
type RefusedError struct {
	// Target is what was refused: an address, a repository path, or a
	// kind of repository URL.
	Target string
	// Kind says why: "a loopback address", "a local repository", ...
	Kind string
	// Allow is the allow-list entry that would allow it, quoted ("" when
	// none does).
	Allow string
	// Setting names the allow-list's setting.
	Setting string
}

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("egress refused: %s is %s", e.Target, e.Kind)
	if e.Allow != "" {
		msg += fmt.Sprintf("; to allow it, add %s to the %s setting", e.Allow, e.Setting)
	}
	return msg
}
