package tlsconfig_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/devcerts"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newCA(t *testing.T) *devcerts.CA {
	t.Helper()
	ca, err := devcerts.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *devcerts.CA, dir, name string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	pair, err := ca.Issue(hosts...)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = pair.WriteFiles(dir, name, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func writeCA(t *testing.T, dir string, cas ...*devcerts.CA) string {
	t.Helper()
	var pem []byte
	for _, ca := range cas {
		pem = append(pem, ca.PEM...)
	}
	f := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(f, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// serve accepts TLS connections with cfg until the test ends, completing
// each handshake.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*tls.Conn); ok {
				_ = tc.HandshakeContext(context.Background())
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// handshake dials addr with client's configuration and returns the
// server's certificate.
func handshake(client *tlsconfig.Client, addr, serverName string) (*x509.Certificate, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := (&tls.Dialer{Config: client.ConfigFor(serverName)}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, errors.New("not a TLS connection")
	}
	return tc.ConnectionState().PeerCertificates[0], nil
}

func TestRotatedCertificateIsServedWithoutRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	oldCA, newCAx := newCA(t), newCA(t)
	certFile, keyFile := issue(t, oldCA, dir, "server", "127.0.0.1")
	var logs bytes.Buffer
	keys, err := tlsconfig.LoadKeyPair(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, tlsconfig.ServerConfig(keys))
	client, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: writeCA(t, dir, oldCA, newCAx)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := handshake(client, addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if first.Issuer.String() != oldCA.Cert.Subject.String() {
		t.Fatalf("first certificate issued by %s", first.Issuer)
	}

	// Half a rotation: a new certificate with the old key does not load,
	// and the old pair stays in use.
	rotated, err := newCAx.Issue("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, rotated.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the files are looked at once a second
	during, err := handshake(client, addr, "127.0.0.1")
	if err != nil {
		t.Fatalf("during the rotation: %v", err)
	}
	if !bytes.Equal(during.Raw, first.Raw) {
		t.Fatal("a half-written pair replaced the certificate")
	}
	if !strings.Contains(logs.String(), "do not load") {
		t.Fatalf("no warning of the half-written pair:\n%s", logs.String())
	}
	if err := os.WriteFile(keyFile, rotated.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	after, err := handshake(client, addr, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Issuer.String() != newCAx.Cert.Subject.String() || bytes.Equal(after.Raw, first.Raw) {
		t.Fatalf("after the rotation the server still serves the certificate issued by %s", after.Issuer)
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Fatalf("the reload was not logged:\n%s", logs.String())
	}
}

func TestClientTrust(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, other := newCA(t), newCA(t)
	certFile, keyFile := issue(t, ca, dir, "server", "sluice.example")
	keys, err := tlsconfig.LoadKeyPair(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, tlsconfig.ServerConfig(keys))
	trusting, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: writeCA(t, dir, ca)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(trusting, addr, "sluice.example"); err != nil {
		t.Fatalf("CA and name: %v", err)
	}
	if _, err := handshake(trusting, addr, "127.0.0.1"); err == nil {
		t.Fatal("a name the certificate does not have was accepted")
	}
	otherDir := t.TempDir()
	stranger, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: writeCA(t, otherDir, other)})
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if _, err := handshake(stranger, addr, "sluice.example"); !errors.As(err, &unknown) {
		t.Fatalf("another CA: %v, want an unknown authority", err)
	}

	// A process trusts its own certificate whatever its names, and
	// nothing else beyond its CA bundle.
	own, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: writeCA(t, otherDir, other), Own: keys})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(own, addr, "127.0.0.1"); err != nil {
		t.Fatalf("own certificate: %v", err)
	}
	// Another certificate of a CA it trusts still has to name the server.
	ownAndCA, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: writeCA(t, dir, ca), Own: keys})
	if err != nil {
		t.Fatal(err)
	}
	named, namedKey := issue(t, ca, dir, "named", "named.example")
	namedKeys, err := tlsconfig.LoadKeyPair(named, namedKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	namedAddr := serve(t, tlsconfig.ServerConfig(namedKeys))
	if _, err := handshake(ownAndCA, namedAddr, "127.0.0.1"); err == nil {
		t.Fatal("a certificate without the server's name was accepted beside the own one")
	}
	if _, err := handshake(ownAndCA, namedAddr, "named.example"); err != nil {
		t.Fatalf("the CA's certificate with the name: %v", err)
	}
	otherCert, otherKey := issue(t, ca, dir, "other", "127.0.0.1")
	otherKeys, err := tlsconfig.LoadKeyPair(otherCert, otherKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherAddr := serve(t, tlsconfig.ServerConfig(otherKeys))
	if _, err := handshake(own, otherAddr, "127.0.0.1"); !errors.As(err, &unknown) {
		t.Fatalf("a server with another certificate of a CA not trusted: %v", err)
	}
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := newCA(t)
	certFile, keyFile := issue(t, ca, dir, "server", "127.0.0.1")
	clientCert, clientKey := issue(t, ca, dir, "client", "build")
	keys, err := tlsconfig.LoadKeyPair(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := tlsconfig.ServerConfig(keys)
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	addr := serve(t, cfg)
	caFile := writeCA(t, dir, ca)
	mine, err := tlsconfig.LoadKeyPair(clientCert, clientKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	with, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: caFile, Certificate: mine})
	if err != nil {
		t.Fatal(err)
	}
	// TLS 1.3 reports a refused client certificate on the first read.
	read := func(c *tlsconfig.Client) error {
		conn, err := (&tls.Dialer{Config: c.ConfigFor("127.0.0.1")}).DialContext(context.Background(), "tcp", addr)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		_, err = conn.Read(make([]byte, 1))
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	if err := read(with); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	without, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := read(without); err == nil {
		t.Fatal("a server that requires a client certificate accepted none")
	}
}

func TestBadFilesAreRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "x.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: notPEM}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA file without certificates: %v", err)
	}
	if _, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: filepath.Join(dir, "missing")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing CA file: %v", err)
	}
	if _, err := tlsconfig.LoadKeyPair(notPEM, notPEM, nil); err == nil {
		t.Fatal("a pair that is not PEM loaded")
	}
	if _, err := tlsconfig.LoadKeyPair(notPEM, "", nil); err == nil {
		t.Fatal("a pair without a key file loaded")
	}
	if _, err := tlsconfig.LoadKeyPair(notPEM, filepath.Join(dir, "missing"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing key file: %v", err)
	}
}

// TLS 1.2 is spoken with forward secrecy and AEAD only: a client that
// offers nothing else than CBC suites is refused, one with GCM connects.
func TestOnlyAEADSuitesOverTLS12(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	dir := t.TempDir()
	certFile, keyFile := issue(t, ca, dir, "server", "127.0.0.1")
	pair, err := tlsconfig.LoadKeyPair(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, tlsconfig.ServerConfig(pair))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	dial := func(suites ...uint16) error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		c, err := (&tls.Dialer{Config: &tls.Config{
			RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12, CipherSuites: suites,
		}}).DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	for _, cbc := range []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256} {
		if err := dial(cbc); err == nil {
			t.Errorf("a TLS 1.2 client with only %s connected", tls.CipherSuiteName(cbc))
		}
	}
	if err := dial(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256); err != nil {
		t.Errorf("a TLS 1.2 client with GCM: %v", err)
	}
}

func TestHugeFilesAreRefused(t *testing.T) {
	t.Parallel()
	huge := filepath.Join(t.TempDir(), "huge.pem")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("A"), 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconfig.NewClient(tlsconfig.ClientOptions{CAFile: huge}); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a 2 MiB CA file: %v", err)
	}
	if _, err := tlsconfig.LoadKeyPair(huge, huge, nil); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("a 2 MiB certificate: %v", err)
	}
}
