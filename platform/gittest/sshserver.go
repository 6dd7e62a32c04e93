package gittest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// SSHServer serves repositories over SSH on 127.0.0.1, as a forge does:
// it runs the git binary's upload-pack for a client that logs in with one
// key, and shows a host key of its own.
type SSHServer struct {
	// Addr is host:port.
	Addr string
	// HostKey is the key the server shows.
	HostKey ssh.PublicKey

	refused atomic.Int64
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

// ServeSSH serves the repositories in root (each a directory of it) to the
// holder of clientKey, until the test ends. The git binary must be
// installed; the test is skipped when it is not.
func ServeSSH(t testing.TB, root string, clientKey ssh.PublicKey) *SSHServer {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git is not installed: no upload-pack to serve repositories with")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	s := &SSHServer{HostKey: signer.PublicKey()}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(clientKey.Marshal()) {
				return nil, nil
			}
			s.refused.Add(1)
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(signer)
	s.ln, err = (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = s.ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Go(func() { s.serve(ctx, c, cfg, gitBin, root) })
		}
	})
	t.Cleanup(func() {
		cancel()
		_ = s.ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// URL is the ssh:// URL of the repository in directory name of root.
func (s *SSHServer) URL(name string) string { return "ssh://git@" + s.Addr + "/" + name }

// KnownHosts is the server's known_hosts line.
func (s *SSHServer) KnownHosts() string {
	return knownhosts.Line([]string{s.Addr}, s.HostKey) + "\n"
}

// Refused counts the logins refused for an unknown key.
func (s *SSHServer) Refused() int64 { return s.refused.Load() }

func (s *SSHServer) serve(ctx context.Context, c net.Conn, cfg *ssh.ServerConfig, gitBin, root string) {
	defer func() { _ = c.Close() }()
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer func() { _ = conn.Close() }()
	s.wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { session(ctx, ch, requests, gitBin, root) })
	}
}

// session runs the one command git asks for: upload-pack of a repository
// under root.
func session(ctx context.Context, ch ssh.Channel, requests <-chan *ssh.Request, gitBin, root string) {
	defer func() { _ = ch.Close() }()
	for req := range requests {
		if req.Type != "exec" {
			_ = req.Reply(req.Type == "env", nil)
			continue
		}
		var msg struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &msg); err != nil {
			_ = req.Reply(false, nil)
			return
		}
		name, arg, _ := strings.Cut(msg.Command, " ")
		dir := filepath.Join(root, filepath.Clean("/"+strings.Trim(arg, `'"`)))
		if name != "git-upload-pack" {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		cmd := exec.CommandContext(ctx, gitBin, "upload-pack", dir)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		code := uint32(0)
		if err := cmd.Run(); err != nil {
			code = 1
			_, _ = fmt.Fprintln(ch.Stderr(), err)
		}
		status := make([]byte, 4)
		binary.BigEndian.PutUint32(status, code)
		_, _ = ch.SendRequest("exit-status", false, status)
		return
	}
}

// NewSSHKey makes a new ed25519 deploy key: the private key in OpenSSH
// format, without a passphrase, and its public key.
func NewSSHKey(t testing.TB) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block)), signer.PublicKey()
}
