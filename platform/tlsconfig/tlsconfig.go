// Package tlsconfig is how every Sluice process uses TLS: the operator's
// certificate and key for its listeners (KeyPair, re-read when the files
// change, so a rotated certificate is served without a restart), and the
// trust its clients give the servers they call (Client: a CA bundle file,
// or the system's roots). Listeners and clients of every process take
// their TLS from here, so that each one has the same versions, the same
// rotation and the same errors.
package tlsconfig

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// MinVersion is the oldest TLS version any Sluice listener or client
// speaks: TLS 1.2, limited to CipherSuites, so that load balancers,
// Prometheus and grpcurl builds that lack 1.3 still connect. Go negotiates
// 1.3 with every peer that has it (its suites are not configurable, and
// all AEAD).
const MinVersion = tls.VersionTLS12

// CipherSuites are the TLS 1.2 suites Sluice accepts: forward secrecy
// (ECDHE) and AEAD only. Go's defaults also allow CBC with SHA-1.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// maxPEMFile bounds a certificate, key or CA bundle file read from disk.
const maxPEMFile = 1 << 20

// readPEMFile reads a PEM file of at most maxPEMFile bytes.
func readPEMFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxPEMFile)
	}
	return b, nil
}

// KeyPair is a certificate and its key read from two PEM files, read
// again when either file changes (its modification time or size): each
// handshake looks at the files, and a new pair is loaded at the first
// handshake after a change. A pair that does not load (the key written
// before the certificate, say) leaves the previous one in use until the
// files are whole again.
type KeyPair struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   fileStamp
	failed  fileStamp // the stamp whose reload failed, logged once
	checked time.Time
}

// fileStamp is what says that the files changed.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// recheckEvery bounds how often a busy listener looks at the files: at
// most once a second, however many handshakes it makes.
const recheckEvery = time.Second

// LoadKeyPair reads the pair, or fails saying which file is wrong. log
// (nil: no logging) is told of each reload and of a reload that failed.
func LoadKeyPair(certFile, keyFile string, log *slog.Logger) (*KeyPair, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: a certificate file and a key file are both required")
	}
	k := &KeyPair{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := k.stat()
	if err != nil {
		return nil, err
	}
	cert, err := k.load()
	if err != nil {
		return nil, err
	}
	k.cert, k.stamp, k.checked = cert, stamp, time.Now()
	return k, nil
}

func (k *KeyPair) stat() (fileStamp, error) {
	c, err := os.Stat(k.certFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("tls certificate: %w", err)
	}
	kf, err := os.Stat(k.keyFile)
	if err != nil {
		return fileStamp{}, fmt.Errorf("tls key: %w", err)
	}
	return fileStamp{certMod: c.ModTime(), keyMod: kf.ModTime(), certSize: c.Size(), keySize: kf.Size()}, nil
}

func (k *KeyPair) load() (*tls.Certificate, error) {
	certPEM, err := readPEMFile(k.certFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s: %w", k.certFile, err)
	}
	keyPEM, err := readPEMFile(k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s: %w", k.keyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: load %s and %s: %w", k.certFile, k.keyFile, err)
	}
	return &cert, nil
}

// Certificate is the current pair, read again first when the files
// changed.
func (k *KeyPair) Certificate() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) < recheckEvery {
		return k.cert, nil
	}
	k.checked = time.Now()
	stamp, err := k.stat()
	if err != nil || stamp == k.stamp {
		// A file gone for a moment (replaced by a rename) keeps the pair.
		return k.cert, nil
	}
	cert, err := k.load()
	if err != nil {
		if stamp != k.failed && k.log != nil {
			k.log.Warn("tls: the certificate files changed but do not load; still serving the previous certificate", slog.Any("error", err))
		}
		k.failed = stamp
		return k.cert, nil
	}
	k.cert, k.stamp = cert, stamp
	if k.log != nil {
		k.log.Info("tls: certificate reloaded", slog.String("cert_file", k.certFile), slog.Time("not_after", leaf(cert).NotAfter))
	}
	return k.cert, nil
}

// leaf is the certificate's parsed leaf (X509KeyPair sets it).
func leaf(c *tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return &x509.Certificate{}
	}
	return l
}

// isCurrent reports whether raw is the current pair's certificate.
func (k *KeyPair) isCurrent(raw []byte) bool {
	c, err := k.Certificate()
	return err == nil && len(c.Certificate) > 0 && bytes.Equal(c.Certificate[0], raw)
}

// ServerConfig is a listener's TLS: k's certificate (re-read when it
// changes), TLS 1.2 or newer, h2 then HTTP/1.1 by ALPN (gRPC clients need
// h2).
func ServerConfig(k *KeyPair) *tls.Config {
	return &tls.Config{
		MinVersion:   MinVersion,
		CipherSuites: CipherSuites,
		NextProtos:   []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return k.Certificate()
		},
	}
}

// Client is the trust a process's clients give the Sluice servers they
// call: the certificates of a CA bundle file, or the system's roots; and,
// in a process that serves TLS itself, its own certificate, so that calls
// it makes to its own listener (`sluice up`, the healthcheck) succeed
// whatever names the certificate has. The zero of *Client (nil) trusts the
// system's roots.
type Client struct {
	roots *x509.CertPool
	// own is the process's own pair; nil when it serves no TLS.
	own *KeyPair
	// cert is a client certificate to present (mutual TLS, NATS).
	cert *KeyPair
}

// ClientOptions are what NewClient trusts and presents.
type ClientOptions struct {
	// CAFile is a PEM bundle of the CAs to trust instead of the system's
	// roots; empty trusts the system's roots.
	CAFile string
	// Own is the process's own certificate, trusted as it is (pinned).
	Own *KeyPair
	// Certificate is presented to servers that ask for one.
	Certificate *KeyPair
}

// NewClient reads the CA bundle, or fails saying what is wrong with it.
func NewClient(o ClientOptions) (*Client, error) {
	c := &Client{own: o.Own, cert: o.Certificate}
	if o.CAFile != "" {
		pem, err := readPEMFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca file: %w", err)
		}
		c.roots = x509.NewCertPool()
		if !c.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca file %s: no PEM certificate in it", o.CAFile)
		}
	}
	return c, nil
}

// Config is the client's TLS configuration (a new one each call), which
// verifies servers against the CA bundle or the system's roots.
func (c *Client) Config() *tls.Config {
	cfg := &tls.Config{MinVersion: MinVersion, CipherSuites: CipherSuites}
	if c == nil {
		return cfg
	}
	cfg.RootCAs = c.roots
	if c.cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c.cert.Certificate()
		}
	}
	return cfg
}

// ConfigFor is Config for a connection to serverName (a host name or an
// IP address) that also accepts the process's own certificate, byte for
// byte, whatever names it has.
func (c *Client) ConfigFor(serverName string) *tls.Config {
	cfg := c.Config()
	cfg.ServerName = serverName
	if c == nil || c.own == nil {
		return cfg
	}
	// The usual verification, done in VerifyConnection (with the name
	// given here: the state has no SNI for an IP address), with one more
	// certificate accepted.
	cfg.InsecureSkipVerify = true //nolint:gosec // verified in VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { return c.verify(cs, serverName) }
	return cfg
}

// verify accepts the process's own certificate, or a chain to the roots
// that names the server.
func (c *Client) verify(cs tls.ConnectionState, serverName string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	peer := cs.PeerCertificates[0]
	if c.own.isCurrent(peer.Raw) {
		return nil
	}
	intermediates := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		intermediates.AddCert(ic)
	}
	_, err := peer.Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: intermediates, DNSName: serverName})
	if err != nil {
		return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
	}
	return nil
}

// Transport is an HTTP transport for calls to Sluice services with the
// client's TLS: h2 over TLS (HTTP/1.1 when the server has no h2), the
// proxy from the environment, and bounded idle connections. Close its idle
// connections when the caller stops.
func (c *Client) Transport() *http.Transport {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	t.TLSClientConfig = c.Config()
	t.ForceAttemptHTTP2 = true
	t.MaxIdleConnsPerHost = 8
	if c != nil && c.own != nil {
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("tls: dial %s: %w", addr, err)
			}
			cfg := c.ConfigFor(host)
			cfg.NextProtos = []string{"h2", "http/1.1"}
			conn, err := (&tls.Dialer{NetDialer: dialer, Config: cfg}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, fmt.Errorf("tls: dial %s: %w", addr, err)
			}
			return conn, nil
		}
	}
	return t
}
