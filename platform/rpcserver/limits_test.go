package rpcserver_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/rpcserver"
)

func startLimited(t *testing.T, limits rpcserver.Limits) *rpcserver.Server {
	t.Helper()
	echo := rpcserver.Route{Path: "/echo", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	})}
	s, err := rpcserver.New(rpcserver.Config{Addr: "127.0.0.1:0", Limits: limits}, slog.New(slog.NewTextHandler(io.Discard, nil)), rpcserver.NewReadiness(), []rpcserver.Route{echo})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// A client that starts a request and never finishes its body, or keeps a
// connection open without asking anything, loses the connection instead of
// holding it (and a goroutine) for ever.
func TestSlowAndIdleClientsAreCutOff(t *testing.T) {
	t.Parallel()
	s := startLimited(t, rpcserver.Limits{ReadTimeout: time.Second, IdleTimeout: time.Second, MaxStreams: 10})
	addr := strings.TrimPrefix(s.URL(), "http://")
	for name, send := range map[string]string{
		"body never sent": "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
		"idle after one":  "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		conn, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		if _, err := io.WriteString(conn, send); err != nil {
			t.Fatal(err)
		}
		// Far beyond the limits: a server without them keeps the
		// connection, and the read below ends with a timeout instead.
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = io.Copy(io.Discard, bufio.NewReader(conn))
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open", name)
		}
	}
}

// Headers are bounded.
func TestHugeHeadersAreRefused(t *testing.T) {
	t.Parallel()
	s := startLimited(t, rpcserver.Limits{})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("a", 200<<10))
	client := &http.Client{}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return // the server hung up: refused
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 200 KiB header: %d", resp.StatusCode)
	}
}
