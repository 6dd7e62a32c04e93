// Command hello is the example service that Sluice builds, tests and deploys.
//
// It serves "hello from <version>" on GET / and "ok" on GET /healthz, and
// shuts down gracefully on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	defaultAddr    = "127.0.0.1:18180"
	defaultVersion = "dev"
	shutdownGrace  = 10 * time.Second
)

// config is what the service is told on its command line and environment.
type config struct {
	addr    string
	version string
}

// parseConfig reads the flags in args; a flag wins over its environment
// variable ($HELLO_ADDR, $HELLO_VERSION), which wins over the default.
func parseConfig(args []string, getenv func(string) string, errOut io.Writer) (config, error) {
	fs := flag.NewFlagSet("hello", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var cfg config
	fs.StringVar(&cfg.addr, "addr", envOr(getenv, "HELLO_ADDR", defaultAddr), "address to listen on (env HELLO_ADDR)")
	fs.StringVar(&cfg.version, "version", envOr(getenv, "HELLO_VERSION", defaultVersion), "version to report (env HELLO_VERSION)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return cfg, nil
}

func envOr(getenv func(string) string, key, fallback string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return fallback
}

// newHandler returns the service's routes.
func newHandler(version string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintf(w, "hello from %s\n", version)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	})
	return mux
}

// serve listens on cfg.addr and serves until ctx is done, then shuts down
// gracefully. ready, when not nil, is called with the bound address.
func serve(ctx context.Context, cfg config, logger *log.Logger, ready func(net.Addr)) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.addr, err)
	}
	srv := &http.Server{
		Handler:           newHandler(cfg.version),
		ReadHeaderTimeout: 5 * time.Second,
	}
	logger.Printf("hello %s listening on %s", cfg.version, ln.Addr())
	if ready != nil {
		ready(ln.Addr())
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Printf("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Printf("stopped")
	return nil
}

func main() {
	logger := log.New(os.Stderr, "hello: ", log.LstdFlags)
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		logger.Print(err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serve(ctx, cfg, logger, nil); err != nil {
		stop()
		logger.Fatal(err)
	}
}
