// Package devcerts makes a development certificate authority and
// certificates signed by it, with crypto/x509 only: for tests, and for the
// Compose stack's TLS (`make dev-certs`). Nothing it makes is meant for
// production, where the operator's own CA issues the certificates.
package devcerts

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity is how long what devcerts makes is valid.
const Validity = 365 * 24 * time.Hour

// CA is a certificate authority: its certificate and key.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
	// PEM is the certificate, PEM-encoded (a CA bundle of one).
	PEM []byte
}

// Pair is a certificate and its key, PEM-encoded.
type Pair struct {
	CertPEM, KeyPEM []byte
}

// NewCA makes a CA named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devcerts: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Sluice development"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(Validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("devcerts: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devcerts: CA certificate: %w", err)
	}
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Issue makes a certificate for hosts (DNS names or IP addresses; the
// first is its common name), good for servers and clients alike.
func (ca *CA) Issue(hosts ...string) (Pair, error) {
	if len(hosts) == 0 {
		return Pair{}, errors.New("devcerts: a certificate needs at least one host")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("devcerts: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"Sluice development"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return Pair{}, fmt.Errorf("devcerts: certificate for %s: %w", hosts[0], err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("devcerts: key for %s: %w", hosts[0], err)
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// WriteFiles writes the pair as <dir>/<name>.pem and <dir>/<name>-key.pem
// (the key with keyMode) and returns their paths.
func (p Pair) WriteFiles(dir, name string, keyMode os.FileMode) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, p.CertPEM, 0o644); err != nil { //nolint:gosec // a certificate is public
		return "", "", fmt.Errorf("devcerts: %w", err)
	}
	if err := os.WriteFile(keyFile, p.KeyPEM, keyMode); err != nil {
		return "", "", fmt.Errorf("devcerts: %w", err)
	}
	return certFile, keyFile, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// Set is a new CA and one certificate it issued, written as files: what a
// test of a TLS server and its clients needs.
type Set struct {
	CA *CA
	// CAFile is the CA's certificate (the bundle clients trust); CertFile
	// and KeyFile are the certificate's (the key 0600).
	CAFile, CertFile, KeyFile string
}

// WriteSet makes a CA and a certificate for hosts, and writes them into dir
// as ca.pem, server.pem and server-key.pem.
func WriteSet(dir string, hosts ...string) (Set, error) {
	ca, err := NewCA("Sluice test CA")
	if err != nil {
		return Set{}, err
	}
	pair, err := ca.Issue(hosts...)
	if err != nil {
		return Set{}, err
	}
	s := Set{CA: ca, CAFile: filepath.Join(dir, "ca.pem")}
	if s.CertFile, s.KeyFile, err = pair.WriteFiles(dir, "server", 0o600); err != nil {
		return Set{}, err
	}
	if err := os.WriteFile(s.CAFile, ca.PEM, 0o600); err != nil {
		return Set{}, fmt.Errorf("devcerts: %w", err)
	}
	return s, nil
}
