package source

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.uber.org/fx"

	"github.com/sluicehq/sluice/platform/rpcserver"
)

// webhookListener serves the webhook receiver, and nothing else but
// /healthz, on an address of its own (the webhook-addr setting), so that
// exposing it to a forge does not expose the API. The API's address keeps
// serving webhooks too.
type webhookListener struct {
	srv *http.Server
	ln  net.Listener
	log *slog.Logger
}

// startWebhookListener serves on cfg.WebhookAddr for the module's life,
// with the TLS of the process's API server; with no address it does
// nothing.
func startWebhookListener(lc fx.Lifecycle, cfg Config, server rpcserver.Config, svc *Service, log *slog.Logger) {
	if cfg.WebhookAddr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle(WebhookPath, NewWebhookHandler(svc, log))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	l := &webhookListener{log: log, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A push fetches the repository first (fetchTimeout).
		WriteTimeout: fetchTimeout + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
	}}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			ln, err := rpcserver.Listen(ctx, log, cfg.WebhookAddr, server.TLS)
			if err != nil {
				return fmt.Errorf("webhook-addr: %w", err)
			}
			l.ln = ln
			go func() {
				if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					log.Error("webhook listener stopped", slog.Any("error", err))
				}
			}()
			log.Info("webhooks listening", slog.String("addr", ln.Addr().String()), slog.Bool("tls", server.TLS != nil))
			return nil
		},
		OnStop: func(ctx context.Context) error { return l.srv.Shutdown(ctx) },
	})
}
