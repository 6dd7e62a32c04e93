// Package embeddednats runs a NATS server with JetStream inside the sluice
// process, for the all-in-one mode. Services still reach it as clients.
package embeddednats

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config says where the server keeps its data and listens.
type Config struct {
	// StoreDir holds JetStream's files; they survive restarts.
	StoreDir string
	// Addr is host:port for clients; port 0 picks a free port, "" listens
	// on 127.0.0.1 with a free port.
	Addr string
}

// Server is a running embedded server.
type Server struct {
	ns *server.Server
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
	ns, err := server.NewServer(&server.Options{
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
	return &Server{ns: ns}, nil
}

// ClientURL is the URL clients connect to.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

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
