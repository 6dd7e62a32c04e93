package natsconn_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/natsconn"
	"github.com/sluicehq/sluice/platform/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.KnownLeaks()...) }

// A permissions violation is logged at error level with its subject;
// other asynchronous errors as warnings.
func TestErrorHandlerLogsRefusedSubjects(t *testing.T) {
	var buf bytes.Buffer
	h := natsconn.ErrorHandler(slog.New(slog.NewJSONHandler(&buf, nil)))
	h(nil, nil, fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "sluice.release.x"`))
	h(nil, &nats.Subscription{Subject: "_INBOX.>"}, fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Subscription to "_INBOX.>"`))
	h(nil, nil, nats.ErrSlowConsumer)
	var lines []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("logged %d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []struct{ level, op, subject string }{
		{"ERROR", "Publish", "sluice.release.x"},
		{"ERROR", "Subscription", "_INBOX.>"},
		{"WARN", "", ""},
	} {
		got := lines[i]
		if got["level"] != want.level || (want.subject != "" && (got["subject"] != want.subject || got["operation"] != want.op)) {
			t.Errorf("line %d = %v, want %+v", i, got, want)
		}
	}
}

func TestCheckRefused(t *testing.T) {
	if err := natsconn.CheckRefused(nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		err             error
		op, subject, in string
	}{
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "$JS.API.STREAM.UPDATE.BUILD"`), "Publish", "$JS.API.STREAM.UPDATE.BUILD", `may not publish to "$JS.API.STREAM.UPDATE.BUILD"`},
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Subscription to "_INBOX.>" using queue "q"`), "Subscription", "_INBOX.>", `may not subscribe to "_INBOX.>"`},
	} {
		op, subject, ok := natsconn.Refused(c.err)
		if !ok || op != c.op || subject != c.subject {
			t.Errorf("Refused(%v) = %q %q %v", c.err, op, subject, ok)
		}
		r := &natsconn.RefusedError{Op: op, Subject: subject, Err: c.err}
		if !errors.Is(r, natsconn.ErrRefused) || !errors.Is(r, nats.ErrPermissionViolation) || !strings.Contains(r.Error(), c.in) {
			t.Errorf("RefusedError %q", r)
		}
	}
	if _, _, ok := natsconn.Refused(nats.ErrTimeout); ok {
		t.Error("a timeout is no permissions violation")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                         "nats://127.0.0.1:4222",
		"nats://build:s3cret@nats-1:4222,nats://nats-2": "nats://build:xxxxx@nats-1:4222,nats://nats-2",
		"build:s3cret@nats-1:4222":                      "build:xxxxx@nats-1:4222",
		"nats://s3cret-token@nats-1:4222":               "nats://xxxxx@nats-1:4222",
	} {
		if got := natsconn.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// A comma-separated list of URLs: the client skips the one that is down.
func TestConnectToAListOfServers(t *testing.T) {
	srv := natstest.Start(t)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "nats://" + ln.Addr().String()
	_ = ln.Close()
	nc, js, err := natsconn.Connect(natsconn.Config{URL: down + ", " + srv.URL, Name: t.Name(), InboxPrefix: "_INBOX_x"},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := nc.ConnectedUrl(); got != srv.URL {
		t.Fatalf("connected to %q, want %q", got, srv.URL)
	}
	if len(nc.Servers()) < 2 {
		t.Fatalf("servers = %v", nc.Servers())
	}
	// JetStream answers on the custom inbox prefix.
	if _, err := js.AccountInfo(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// A server that requires TLS and verifies clients' certificates: a client
// with the CA and a certificate connects (tls:// URL), one without the
// certificate, or without the CA, does not.
func TestConnectWithTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := devcerts.NewCA("nats test CA")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, hosts ...string) (string, string) {
		pair, err := ca.Issue(hosts...)
		if err != nil {
			t.Fatal(err)
		}
		certFile, keyFile, err := pair.WriteFiles(dir, name, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile
	}
	serverCert, serverKey := write("server", "127.0.0.1")
	clientCert, clientKey := write("client", "build")
	caFile, _, err := devcerts.Pair{CertPEM: ca.PEM}.WriteFiles(dir, "ca", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  verify: true\n}\n", serverCert, serverKey, caFile), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t, natstest.WithConfig(conf))
	url := strings.Replace(srv.URL, "nats://", "tls://", 1)
	connect := func(cfg natsconn.Config) error {
		cfg.URL, cfg.Name = url, t.Name()
		nc, _, err := natsconn.Connect(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer nc.Close()
		return nc.FlushTimeout(3 * time.Second)
	}
	if err := connect(natsconn.Config{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey}); err != nil {
		t.Fatalf("with the CA and a client certificate: %v\n%s", err, srv.Output())
	}
	if err := connect(natsconn.Config{CAFile: caFile}); err == nil {
		t.Fatal("connected without a client certificate")
	}
	if err := connect(natsconn.Config{CertFile: clientCert, KeyFile: clientKey}); err == nil {
		t.Fatal("connected without the CA (the system's roots do not know it)")
	}
	if _, _, err := natsconn.Connect(natsconn.Config{URL: url, CAFile: filepath.Join(dir, "missing.pem")}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
