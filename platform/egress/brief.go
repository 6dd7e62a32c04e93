package egress

import (
	"errors"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxBriefLen bounds the message of Brief's error, in bytes.
const MaxBriefLen = 300

// Brief returns err as an error whose message is safe to show the user
// who chose the target (a delivery attempt's error, a verification's
// failure, a repository's fetch error): one line of valid UTF-8 of at most
// MaxBriefLen bytes, with no URL of a failed request (which may carry a
// token) and no IP address but the one a refusal names (so no address of a
// name server or of an internal host leaks). A refusal is told whole. It
// unwraps to err; Brief(nil) is nil.
func Brief(err error) error {
	if err == nil {
		return nil
	}
	return &briefError{msg: brief(err), err: err}
}

type briefError struct {
	msg string
	err error
}

func (e *briefError) Error() string { return e.msg }
func (e *briefError) Unwrap() error { return e.err }

func brief(err error) string {
	if refused, ok := errors.AsType[*RefusedError](err); ok {
		return clip(refused.Error())
	}
	msg := err.Error()
	// `Post "https://hooks.example/T0K3N": <cause>` becomes `<cause>`.
	if ue, ok := errors.AsType[*url.Error](err); ok && ue.Err != nil {
		msg = strings.Replace(msg, ue.Error(), ue.Err.Error(), 1)
	}
	return clip(scrubAddresses(msg))
}

// addressLike finds what may be an IPv4 or IPv6 address; only what parses
// as one is replaced.
var addressLike = regexp.MustCompile(`(?i)\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:]+(?:\.\d{1,3}){0,3}(?:%[0-9a-z]+)?`)

func scrubAddresses(s string) string {
	return addressLike.ReplaceAllStringFunc(s, func(m string) string {
		if _, err := netip.ParseAddr(m); err == nil {
			return "<address>"
		}
		return m
	})
}

// clip makes s one line of printable, valid UTF-8 of at most MaxBriefLen
// bytes, cut at a character boundary and ending in "…" when cut.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= MaxBriefLen {
		return s
	}
	const mark = "…"
	cut := MaxBriefLen - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
