// Package embeddednats runs a NATS server with JetStream inside the sluice
// process, for the all-in-one mode. Services still reach it as clients,
// each as its own user with its own permissions (platform/natsauth), with
// passwords made afresh on every start and never written anywhere: a step
// that reaches the port has no credential to use it.
package embeddednats

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sluicehq/sluice/platform/natsauth"
)

// Config says where the server keeps its data and listens.
type Config struct {
	// StoreDir holds JetStream's files; they survive restarts.
	StoreDir string
	// Addr is host:port for clients; port 0 picks a free port, "" listens
	// on 127.0.0.1 with a free port.
	Addr string
	// Users are the server's users (natsauth.Users); it accepts no one
	// else. Each gets a random password (Password).
	Users []natsauth.User
}

// Server is a running embedded server.
type Server struct {
	ns        *server.Server
	passwords map[string]string
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: store directory is empty")
	}
	host, port := "127.0.0.1", -1
	if cfg.Addr != "" {
		h, p, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: address %q: %w", cfg.Addr, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: port %q: %w", p, err)
		}
		host, port = h, n
		if n == 0 {
			port = -1 // nats-server's "random port"; 0 would mean 4222
		}
	}
	if len(cfg.Users) == 0 {
		return nil, errors.New("embedded nats: no users")
	}
	users, passwords := serverUsers(cfg.Users)
	ns, err := server.NewServer(&server.Options{
		Users:      users,
		ServerName: "sluice-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		// The all-in-one process is one host; keep JetStream's memory in check.
		JetStreamMaxMemory: 256 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	return &Server{ns: ns, passwords: passwords}, nil
}

// serverUsers are users as the server takes them, in the global account
// (where the JetStream data of earlier versions is), and their passwords.
func serverUsers(in []natsauth.User) ([]*server.User, map[string]string) {
	users := make([]*server.User, 0, len(in))
	passwords := make(map[string]string, len(in))
	for _, u := range in {
		pw := rand.Text()
		passwords[u.Name] = pw
		su := &server.User{Username: u.Name, Password: pw}
		if !u.All {
			su.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: subjects(u.Publish)},
				Subscribe: &server.SubjectPermission{Allow: subjects(u.Subscribe)},
			}
		}
		users = append(users, su)
	}
	return users, passwords
}

func subjects(rules []natsauth.Rule) []string {
	out := make([]string, 0, len(rules))
	for _, r := range rules {
		out = append(out, r.Subject)
	}
	return out
}

// ClientURL is the URL clients connect to, without credentials.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Password is user's password; "" for a user the server does not have.
func (s *Server) Password(user string) string { return s.passwords[user] }

// AdminURL is ClientURL with the admin's credentials in it, for tools and
// tests.
func (s *Server) AdminURL() string {
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		return s.ClientURL()
	}
	u.User = url.UserPassword(natsauth.Admin, s.Password(natsauth.Admin))
	return u.String()
}

// Stop shuts the server down and waits, or gives up when ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
