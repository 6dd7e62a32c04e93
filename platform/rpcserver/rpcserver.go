// Package rpcserver is the HTTP server every Sluice process runs: Connect
// (and gRPC, gRPC-Web) handlers with validation and error mapping, plain HTTP
// routes such as webhooks, /healthz, /readyz, /metrics, gRPC health and
// gRPC server reflection.
package rpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/validate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/tlsconfig"
)

// Route is one handler mounted on the server: a Connect service (from a
// generated New...Handler) or any plain HTTP handler.
type Route struct {
	Path    string
	Handler http.Handler
	// Service is the fully-qualified Connect service name, reported by gRPC
	// health; empty for plain HTTP routes.
	Service string
}

// Config is the server's listen address, TLS and limits.
type Config struct {
	// Addr is host:port; port 0 picks a free port (see Server.Addr).
	Addr string
	// TLS is the operator's certificate; nil serves plain HTTP (and h2c).
	TLS *tlsconfig.KeyPair
	// Limits bound what one client may hold of the server; zero fields
	// take DefaultLimits'.
	Limits Limits
	// Registry is what /metrics serves, and where the server's own
	// metrics go; nil: a registry of its own. A composed process shares
	// one with its services (fxkit.Server).
	Registry *prometheus.Registry
}

// Limits bound the connections and requests of a server, so that a slow
// or hostile client holds neither a connection nor a goroutine for ever.
type Limits struct {
	// ReadTimeout bounds reading a request, headers and body; a stream's
	// responses are not bounded (watching a run takes as long as the run).
	ReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection without requests.
	IdleTimeout time.Duration
	// MaxStreams bounds the requests one HTTP/2 connection has in flight
	// at once (streams included).
	MaxStreams int
}

// DefaultLimits are the limits of a server whose Config leaves them zero.
var DefaultLimits = Limits{ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxStreams: 100}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = DefaultLimits.ReadTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultLimits.IdleTimeout
	}
	if l.MaxStreams <= 0 {
		l.MaxStreams = DefaultLimits.MaxStreams
	}
	return l
}

// Readiness collects named checks; /readyz is 200 only when all pass.
type Readiness struct {
	mu     sync.Mutex
	checks map[string]func() error
}

// NewReadiness makes an empty set of checks.
func NewReadiness() *Readiness { return &Readiness{checks: map[string]func() error{}} }

// Add registers a check.
func (r *Readiness) Add(name string, check func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks[name] = check
}

// Check runs every check and returns the failures by name.
func (r *Readiness) Check() map[string]error {
	r.mu.Lock()
	defer r.mu.Unlock()
	failed := map[string]error{}
	for name, c := range r.checks {
		if err := c(); err != nil {
			failed[name] = err
		}
	}
	return failed
}

// HandlerOptions are the options every Connect handler is built with:
// the guard that enforces each procedure's authorization policy, then
// protovalidate on every request (so that a caller who may not call a
// procedure learns nothing from its validation), errors mapped to codes
// once, outside both, and outermost the audit recorder, which sees every
// call of a procedure that changes state and the code it ended with.
// A handler that panics fails that call only, with an internal error
// (which the recorder sees), and its stack is logged; so does a panic in
// the interceptors, caught outside them all.
func HandlerOptions(log *slog.Logger, guard *auth.Guard, recorder *audit.Recorder) []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithRecover(recoverPanic(log)),
		connect.WithInterceptors(recorder, apierror.Interceptor(log), guard, validate.NewInterceptor()),
		connect.WithRecover(recoverPanic(log)),
		connect.WithReadMaxBytes(MaxRequestBytes),
	}
}

// recoverPanic logs a handler's panic with its stack and makes it the
// caller's internal error. http.ErrAbortHandler, which aborts a response
// on purpose, is not recovered (connect.WithRecover).
func recoverPanic(log *slog.Logger) func(context.Context, connect.Spec, http.Header, any) error {
	return func(ctx context.Context, spec connect.Spec, _ http.Header, v any) error {
		log.ErrorContext(ctx, "handler panicked; the call fails with an internal error",
			slog.String("procedure", spec.Procedure), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		return connect.NewError(connect.CodeInternal, errors.New("internal error; the service log has the details"))
	}
}

// MaxRequestBytes bounds one request message, after decompression (a
// small gzip body cannot inflate past it): the largest request Sluice
// takes is a secret's value (64 KiB) or a repository with an SSH key.
// A larger one is refused with resource_exhausted before it is decoded.
const MaxRequestBytes = 4 << 20

// Server is the process's HTTP server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	handler   http.Handler
	readiness *Readiness
	srv       *http.Server
	ln        net.Listener
	draining  chan struct{}
	// base is every request's parent context; Stop cancels it so that
	// long-lived streams end and let the drain finish.
	base       context.Context
	cancelBase context.CancelFunc
	Registry   *prometheus.Registry
}

// New builds the server for routes; it listens on Start.
func New(cfg Config, log *slog.Logger, readiness *Readiness, routes []Route) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("rpcserver: listen address is empty")
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: log, readiness: readiness, draining: make(chan struct{}), Registry: reg}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"})
	s.Registry.MustRegister(requests)

	mux := http.NewServeMux()
	var services []string
	seen := map[string]bool{}
	sort.Slice(routes, func(i, j int) bool { return routes[i].Path < routes[j].Path })
	for _, r := range routes {
		if seen[r.Path] {
			return nil, fmt.Errorf("rpcserver: two routes for %s", r.Path)
		}
		seen[r.Path] = true
		mux.Handle(r.Path, countRequests(requests, r.Path, r.Handler))
		if r.Service != "" {
			if err := checkPolicies(r.Service); err != nil {
				return nil, err
			}
			services = append(services, r.Service)
		}
	}
	checker := grpchealth.NewStaticChecker(services...)
	mux.Handle(grpchealth.NewHandler(checker))
	// Server reflection, so that grpcurl and `buf curl --reflect` list and
	// call the services without their protos (the generated code
	// registered them).
	reflector := grpcreflect.NewStaticReflector(append(slices.Clone(services), grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
	s.handler = mux
	return s, nil
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-s.draining:
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	default:
	}
	if s.readiness != nil {
		if failed := s.readiness.Check(); len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for name, err := range failed {
				_, _ = fmt.Fprintf(w, "%s: %v\n", name, err)
			}
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

// checkPolicies refuses to serve a Connect service with a procedure that
// has no authorization policy.
func checkPolicies(service string) error {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return fmt.Errorf("rpcserver: service %s: %w", service, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return fmt.Errorf("rpcserver: %s is not a service", service)
	}
	if err := auth.CheckPolicies(sd); err != nil {
		return fmt.Errorf("rpcserver: service %s: %w", service, err)
	}
	return nil
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func countRequests(c *prometheus.CounterVec, route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, req)
		c.WithLabelValues(route, fmt.Sprint(rec.code)).Inc()
	})
}

// maxHeaderBytes bounds a request's headers (a token is under 100 bytes).
const maxHeaderBytes = 64 << 10

// Handler is the server's root handler (for in-memory tests).
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens and serves in the background; it returns once listening.
func (s *Server) Start(ctx context.Context) error {
	ln, err := Listen(ctx, s.log, s.cfg.Addr, s.cfg.TLS)
	if err != nil {
		return err
	}
	s.ln = ln
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if s.cfg.TLS != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	limits := s.cfg.Limits.withDefaults()
	s.srv = &http.Server{
		Handler:           s.handler,
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       limits.ReadTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: limits.MaxStreams},
		BaseContext:       func(net.Listener) context.Context { return s.base },
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", slog.Any("error", err))
		}
	}()
	s.log.Info("listening", slog.String("addr", ln.Addr().String()), slog.Bool("tls", s.cfg.TLS != nil))
	return nil
}

// Listen listens on addr, with TLS from keys when they are given. Without
// TLS on an address other than loopback it warns: tokens and secrets
// would cross the network in plain text. Every listener of a Sluice
// process listens through it.
func Listen(ctx context.Context, log *slog.Logger, addr string, keys *tlsconfig.KeyPair) (net.Listener, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	if keys != nil {
		return tls.NewListener(ln, tlsconfig.ServerConfig(keys)), nil
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		log.Warn("listening without TLS on an address other than loopback: tokens and secrets cross the network in plain text; set tls-cert-file and tls-key-file (docs/security.md)",
			slog.String("addr", ln.Addr().String()))
	}
	return ln, nil
}

// Addr is the address the server listens on, once started.
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// URL is http://Addr, or https://Addr with TLS.
func (s *Server) URL() string {
	if s.cfg.TLS != nil {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Stop turns readiness off, then drains in-flight requests until ctx ends.
// Streaming requests end when their handlers see the cancelled context.
func (s *Server) Stop(ctx context.Context) error {
	select {
	case <-s.draining:
	default:
		close(s.draining)
	}
	if s.srv == nil {
		s.cancelBase()
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- s.srv.Shutdown(ctx) }()
	// Unary requests get a moment to finish; then streams are told to end.
	select {
	case err := <-done:
		s.cancelBase()
		return err
	case <-time.After(time.Second):
		s.cancelBase()
	}
	err := <-done
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return s.srv.Close()
	}
	return err
}
