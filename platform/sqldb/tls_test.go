package sqldb_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

// A service reaches PostgreSQL with sslmode up to verify-full: the
// database URL's sslmode and sslrootcert are honoured, a server whose
// certificate no trusted root signed is refused, and so is one whose name
// is not the host's. scripts/test-postgres gives its server a certificate
// for the name localhost; a server without TLS skips the test.
func TestPostgresVerifyFull(t *testing.T) {
	t.Parallel()
	base := sqldbtest.URLFor(t, sqldbtest.Postgres)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	var ssl, certFile string
	if err := db.QueryRowContext(ctx, `SELECT current_setting('ssl'), current_setting('ssl_cert_file')`).Scan(&ssl, &certFile); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if ssl != "on" {
		t.Skipf("the test server has no TLS (ssl = %s); scripts/test-postgres sets it up", ssl)
	}
	if _, err := os.Stat(certFile); err != nil {
		t.Skipf("the server's certificate %s is not readable here: %v", certFile, err)
	}
	with := func(host string, params map[string]string) string {
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			u.Host = host + ":" + u.Port()
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	open := func(dsn string) error {
		db, err := sqldb.Open(ctx, dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		var inTLS bool
		if err := db.QueryRowContext(ctx, `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&inTLS); err != nil {
			return err
		}
		if !inTLS {
			t.Errorf("%s: the connection is not encrypted", sqldb.Redacted(dsn))
		}
		return nil
	}

	if err := open(with("localhost", map[string]string{"sslmode": "verify-full", "sslrootcert": certFile})); err != nil {
		t.Fatalf("verify-full with the server's root: %v", err)
	}
	// A root that signed nothing is refused, at once (a setting to mend,
	// not a server still starting: no minute of retries).
	other := otherRoot(t)
	for _, mode := range []string{"verify-full", "verify-ca"} {
		start := time.Now()
		if err := open(with("localhost", map[string]string{"sslmode": mode, "sslrootcert": other})); err == nil {
			t.Errorf("%s accepted a server no trusted root signed", mode)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("%s took %s to refuse a certificate: it was retried", mode, took)
		}
	}
	// The certificate names localhost, not the address 127.0.0.1.
	if err := open(with("127.0.0.1", map[string]string{"sslmode": "verify-full", "sslrootcert": certFile})); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("verify-full accepted a certificate for another name: %v", err)
	}
	if err := open(with("127.0.0.1", map[string]string{"sslmode": "verify-ca", "sslrootcert": certFile})); err != nil {
		t.Errorf("verify-ca checks the root and not the name: %v", err)
	}
}

// otherRoot writes a self-signed certificate that signed nothing.
func otherRoot(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-root.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
