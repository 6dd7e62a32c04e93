// Package natstest runs a real nats-server process (with JetStream) for
// tests.
//
// Tests of the platform and the services must not import
// github.com/nats-io/nats-server (the embedded server belongs to the
// all-in-one binary only), so this helper runs the nats-server binary that
// `make bin/nats-server` installs into the repository's bin directory.
package natstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
)

// EnvBinary names the environment variable that, when set, is the path of
// the nats-server binary to run.
const EnvBinary = "SLUICE_NATS_SERVER"

const (
	startTimeout = 20 * time.Second
	stopTimeout  = 10 * time.Second
	pollInterval = 10 * time.Millisecond
)

// Server is a nats-server process started by Start.
type Server struct {
	// URL is the client URL, nats://127.0.0.1:PORT (tls:// when the config
	// requires TLS). It does not change on
	// Restart.
	URL string

	bin      string
	opts     options
	storeDir string
	baseDir  string
	port     int
	out      *syncBuffer // everything the server printed, across restarts

	mu      sync.Mutex
	proc    *process // nil when stopped
	started int      // number of starts, to name per-start directories
}

// process is one run of the nats-server binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait has returned
	err  error         // from cmd.Wait, valid once done is closed
}

// Option changes how Start runs the server.
type Option func(*options)

type options struct {
	config string   // -c
	env    []string // added to the server's environment
}

// WithConfig runs the server with a config file (-c path), for accounts,
// users and permissions. The command line still sets the address, the
// port, JetStream and its store directory, which win over the file.
func WithConfig(path string) Option {
	return func(o *options) { o.config = path }
}

// WithEnv adds KEY=VALUE variables to the server's environment, for the
// $VARIABLE references of its config file (passwords).
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// Start starts nats-server with JetStream on a random loopback port and a
// store directory in t.TempDir(), waits until it accepts connections, and
// stops it in t.Cleanup.
//
// The binary is $SLUICE_NATS_SERVER if set, else nats-server on PATH, else
// bin/nats-server in the working directory or one of its parents. If none is
// found, Start calls t.Fatal telling to run `make bin/nats-server`.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	s := &Server{
		bin:      bin,
		storeDir: filepath.Join(base, "jetstream"),
		baseDir:  base,
		out:      &syncBuffer{},
	}
	for _, o := range opts {
		o(&s.opts)
	}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatalf("natstest: %v\nnats-server output:\n%s", err, s.out.String())
	}
	return s
}

// Stop stops the server now (SIGTERM, then wait for it to exit). Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.stop()
	s.proc = nil
}

// Restart stops the server if it is running and starts it again on the same
// port with the same JetStream store directory.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("natstest: restart: %v\nnats-server output:\n%s", err, s.out.String())
	}
}

// Connect connects to the server and closes the connection in t.Cleanup.
// The connection reconnects forever (every 50ms), so it survives Restart;
// opts are applied after those defaults.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{
		nats.Name(t.Name()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
	}, opts...)
	nc, err := nats.Connect(s.URL, all...)
	if err != nil {
		t.Fatalf("natstest: connect to %s: %v\nnats-server output:\n%s", s.URL, err, s.out.String())
	}
	t.Cleanup(nc.Close)
	return nc
}

// Output returns everything the server has printed so far, across restarts.
func (s *Server) Output() string {
	return s.out.String()
}

// start runs the binary and waits until it accepts connections. The first
// start picks a random port (-p -1) and learns it from the ports file;
// later starts reuse it.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("server already running")
	}
	s.started++
	portsDir := filepath.Join(s.baseDir, "ports-"+strconv.Itoa(s.started))
	if err := os.MkdirAll(portsDir, 0o755); err != nil {
		return fmt.Errorf("create ports dir: %w", err)
	}
	port := -1
	if s.port != 0 {
		port = s.port
	}
	fmt.Fprintf(s.out, "--- natstest: start %d: %s -p %d\n", s.started, s.bin, port)

	args := []string{
		"-a", "127.0.0.1",
		"-p", strconv.Itoa(port),
		"-js",
		"-sd", s.storeDir,
		"--ports_file_dir", portsDir,
	}
	if s.opts.config != "" {
		args = append(args, "-c", s.opts.config)
	}
	// Not CommandContext: Stop ends it with SIGTERM and waits.
	cmd := exec.Command(s.bin, args...) //nolint:noctx // stopped gracefully by Stop
	if len(s.opts.env) > 0 {
		cmd.Env = append(os.Environ(), s.opts.env...)
	}
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	url, err := p.waitReady(portsDir)
	if err != nil {
		p.stop()
		return err
	}
	if s.port == 0 {
		port, err := portOf(url)
		if err != nil {
			p.stop()
			return err
		}
		s.port, s.URL = port, url
	}
	s.proc = p
	return nil
}

// waitReady waits for the ports file the server writes once it listens,
// then for the server to greet a client with INFO, and returns the client
// URL.
func (p *process) waitReady(portsDir string) (string, error) {
	deadline := time.Now().Add(startTimeout)
	suffix := "_" + strconv.Itoa(p.cmd.Process.Pid) + ".ports"
	for {
		select {
		case <-p.done:
			return "", fmt.Errorf("nats-server exited during startup: %w", p.err)
		default:
		}
		if url, ok := readPortsFile(portsDir, suffix); ok && greets(url) {
			return url, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("nats-server not ready after %v", startTimeout)
		}
		time.Sleep(pollInterval)
	}
}

// readPortsFile reads the client URL from the server's ports file
// (<exe>_<pid>.ports, JSON with a "nats" list). It reports false until the
// file exists and is complete.
func readPortsFile(dir, suffix string) (string, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), suffix) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", false
		}
		var ports struct {
			Nats []string `json:"nats"`
		}
		if json.Unmarshal(data, &ports) != nil || len(ports.Nats) == 0 {
			return "", false // not completely written yet
		}
		return ports.Nats[0], true
	}
	return "", false
}

// greets reports whether a client connecting to url receives the server's
// INFO line.
func greets(url string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", hostPort(url))
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "INFO ")
}

// hostPort is a client URL's address: nats://, or tls:// when the
// server's config requires TLS.
func hostPort(url string) string {
	if _, rest, ok := strings.Cut(url, "://"); ok {
		return rest
	}
	return url
}

func portOf(url string) (int, error) {
	_, portStr, err := net.SplitHostPort(hostPort(url))
	if err != nil {
		return 0, fmt.Errorf("client url %q: %w", url, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return 0, fmt.Errorf("client url %q: %w", url, err)
	}
	return port, nil
}

// stop sends SIGTERM and waits for the process to exit, killing it if it
// takes longer than stopTimeout.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Binary locates the nats-server binary the way Start does; see Start.
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("natstest: $%s=%s is not an executable file", EnvBinary, p)
		}
		return p, nil
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("natstest: %w", err)
	}
	if p, ok := findUp(wd, filepath.Join("bin", "nats-server")); ok {
		return p, nil
	}
	return "", fmt.Errorf("natstest: nats-server binary not found (not in $%s, not on PATH, no bin/nats-server above %s); run `make bin/nats-server` at the repository root", EnvBinary, wd)
}

// findUp looks for rel in dir and each of its parents and returns the first
// executable found.
func findUp(dir, rel string) (string, bool) {
	for {
		p := filepath.Join(dir, rel)
		if isExecutable(p) {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// KnownLeaks are goroutines that nats.go itself leaves behind, for
// goleak.VerifyTestMain(m, natstest.KnownLeaks()...). In nats.go v1.55.0 an
// async publish (the outbox relay, ObjectStore.Put) starts
// resetPendingAcksOnReconnect, which reads connStatusCh only when it gets to
// run; when cleanupReplySub has set the field to nil by then, it waits on a
// nil channel for good.
func KnownLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go/jetstream.(*jetStream).resetPendingAcksOnReconnect"),
	}
}
