package rpcserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"

	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/rpcserver"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/source/v1/sourcev1connect"
)

// panicky panics on the WhoAmI of a caller named "bad", as a handler with
// a bug does on one input, and answers everyone else.
type panicky struct {
	sourcev1connect.UnimplementedAccessServiceHandler
}

func (panicky) WhoAmI(ctx context.Context, _ *sourcev1.WhoAmIRequest) (*sourcev1.WhoAmIResponse, error) {
	id, _ := auth.FromContext(ctx)
	if id.Name == "bad" {
		panic(fmt.Errorf("no greeting for %q", id.Name)) // as a bug in a handler would
	}
	return &sourcev1.WhoAmIResponse{Name: id.Name}, nil
}

// named admits every secret as a viewer named after it.
type named struct{}

func (named) Authenticate(secret string) (auth.Identity, error) {
	return auth.Identity{Kind: auth.KindUser, Name: secret, Role: authv1.Role_ROLE_VIEWER}, nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A handler that panics fails that call only, with an internal error, and
// logs the panic with its stack; the server goes on answering, the same
// connection included.
func TestHandlerPanicIsAnInternalErrorForThatCallOnly(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	path, h := sourcev1connect.NewAccessServiceHandler(panicky{}, rpcserver.HandlerOptions(log, auth.NewGuard(named{}, log), audit.NewRecorder("source", nil, nil, log))...)
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	call := func(name string) (*sourcev1.WhoAmIResponse, error) {
		client := sourcev1connect.NewAccessServiceClient(&http.Client{Transport: auth.WithSecret(srv.Client().Transport, func() string { return name })}, srv.URL)
		return client.WhoAmI(t.Context(), &sourcev1.WhoAmIRequest{})
	}

	_, err := call("bad")
	if ce := new(connect.Error); !errors.As(err, &ce) || ce.Code() != connect.CodeInternal || strings.Contains(ce.Message(), "greeting") {
		t.Fatalf("the panicking call: %v; want an internal error that does not show the panic", err)
	}
	for _, name := range []string{"good", "also-good"} {
		if res, err := call(name); err != nil || res.GetName() != name {
			t.Fatalf("a call after the panic: %v, %v", res, err)
		}
	}
	out := logs.String()
	for _, want := range []string{`"msg":"handler panicked`, `"procedure":"/sluice.source.v1.AccessService/WhoAmI"`, `no greeting for \"bad\"`, "panicky.WhoAmI"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not have %s:\n%s", want, out)
		}
	}
}
