// Package natsconn connects a service to NATS and JetStream.
package natsconn

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// Config says how to reach NATS.
type Config struct {
	// URL is one server URL or a comma-separated list of them (the
	// members of a cluster); the client picks one and fails over to the
	// others.
	URL  string
	Name string
	// User and Password authenticate the connection when User is set.
	// The password is never logged.
	User, Password string
	// InboxPrefix replaces _INBOX as the prefix of the reply subjects the
	// connection subscribes to, so that a user allowed to subscribe to
	// InboxPrefix.> only cannot read other users' replies. Empty keeps
	// _INBOX.
	InboxPrefix string
	// CAFile is a CA bundle (PEM) the servers' certificates are checked
	// against instead of the system's roots; setting it requires TLS
	// (tls:// URLs).
	CAFile string
	// CertFile and KeyFile are a client certificate, presented to servers
	// that verify clients (re-read when the files change).
	CertFile, KeyFile string
	// Options are extra connect options (credentials, in-process server).
	Options []nats.Option
}

// Connect dials NATS, retrying while the server is not up yet, and keeps
// reconnecting forever afterwards. Errors the server reports later (a
// subject the user may not publish or subscribe to) are logged: a
// permissions violation at error level with the subject.
func Connect(cfg Config, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", slog.Any("error", err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", slog.String("url", c.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(ErrorHandler(log)),
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	tlsOpts, err := cfg.tls()
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, tlsOpts...)
	if cfg.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	opts = append(opts, cfg.Options...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to nats %s: %w", Redact(cfg.URL), err)
	}
	// A publish whose acknowledgement never comes (a lost PubAck during a
	// leader change) fails after the timeout, so the outbox relay retries
	// instead of waiting for ever.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// tls is the connection's TLS: none unless a CA file or a client
// certificate is given (a tls:// URL alone uses the system's roots).
func (cfg Config) tls() ([]nats.Option, error) {
	if cfg.CAFile == "" && cfg.CertFile == "" {
		return nil, nil
	}
	var o tlsconfig.ClientOptions
	o.CAFile = cfg.CAFile
	if cfg.CertFile != "" {
		keys, err := tlsconfig.LoadKeyPair(cfg.CertFile, cfg.KeyFile, nil)
		if err != nil {
			return nil, fmt.Errorf("nats client certificate: %w", err)
		}
		o.Certificate = keys
	}
	client, err := tlsconfig.NewClient(o)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	return []nats.Option{nats.Secure(client.Config())}, nil
}

// ErrorHandler logs the errors the server reports asynchronously. A
// permissions violation is logged at error level with the refused subject:
// the server does not answer a request to a subject the user may not
// publish to, so this log line is often the only trace of it.
func ErrorHandler(log *slog.Logger) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		attrs := []any{slog.Any("error", err)}
		if sub != nil {
			attrs = append(attrs, slog.String("subscription", sub.Subject))
		}
		if op, subject, ok := Refused(err); ok {
			log.Error("nats refused a subject: the NATS user lacks a permission (see deploy/nats/auth.conf)",
				append(attrs, slog.String("operation", op), slog.String("subject", subject))...)
			return
		}
		log.Warn("nats error", attrs...)
	}
}

// violationRe matches the server's text: Permissions Violation for
// Publish to "SUBJECT" (or Subscription to "SUBJECT" [using queue ...]).
var violationRe = regexp.MustCompile(`(?i)permissions violation for (\w+) to "([^"]*)"`)

// Refused reports whether err is a permissions violation, and which
// operation (Publish or Subscription) on which subject was refused.
func Refused(err error) (op, subject string, ok bool) {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return "", "", false
	}
	m := violationRe.FindStringSubmatch(err.Error())
	if m == nil {
		return "", "", true
	}
	return m[1], m[2], true
}

// ErrRefused is what the error of a call that ran into a subject the NATS
// user may not use wraps (see CheckRefused).
var ErrRefused = errors.New("refused by NATS permissions")

// RefusedError is a permissions violation the server reported.
type RefusedError struct {
	// Op is Publish or Subscription, as the server says.
	Op string
	// Subject is the refused subject.
	Subject string
	// Err is the connection's error (nats.ErrPermissionViolation).
	Err error
}

func (e *RefusedError) Error() string {
	verb := "publish to"
	if strings.EqualFold(e.Op, "subscription") {
		verb = "subscribe to"
	}
	return fmt.Sprintf("%v: the NATS user may not %s %q (%v)", ErrRefused, verb, e.Subject, e.Err)
}

// Unwrap makes errors.Is find ErrRefused and nats.ErrPermissionViolation.
func (e *RefusedError) Unwrap() []error { return []error{ErrRefused, e.Err} }

// CheckRefused tells whether nc was refused a subject since before (what
// nc.LastError() returned before the call): a JetStream request to a
// subject the user may not publish to gets no answer and only times out,
// and the server's reason arrives as the connection's last error. It
// returns nil when there is no new permissions violation, else a
// *RefusedError naming the subject.
func CheckRefused(nc *nats.Conn, before error) error {
	if nc == nil {
		return nil
	}
	last := nc.LastError()
	if last == nil || last == before { //nolint:errorlint // identity: is it a new error?
		return nil
	}
	op, subject, ok := Refused(last)
	if !ok {
		return nil
	}
	return &RefusedError{Op: op, Subject: subject, Err: last}
}

// Redact hides the passwords and tokens in a (comma-separated list of)
// URL(s): nats://user:xxxxx@host, nats://xxxxx@host.
func Redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		at := strings.LastIndex(p, "@")
		if at < 0 {
			continue
		}
		start := 0
		if s := strings.Index(p, "://"); s >= 0 && s < at {
			start = s + len("://")
		}
		secret := "xxxxx"
		if user, _, hasPassword := strings.Cut(p[start:at], ":"); hasPassword {
			secret = user + ":xxxxx"
		}
		parts[i] = p[:start] + secret + p[at:]
	}
	return strings.Join(parts, ",")
}
