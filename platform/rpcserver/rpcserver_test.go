package rpcserver_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHealthReadinessAndDrain(t *testing.T) {
	defer http.DefaultClient.CloseIdleConnections()
	ready := rpcserver.NewReadiness()
	provisioned := errors.New("streams not applied yet")
	ready.Add("nats", func() error { return provisioned })
	hello := rpcserver.Route{Path: "/hello", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hi"))
	})}
	s, err := rpcserver.New(rpcserver.Config{Addr: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)), ready, []rpcserver.Route{hello})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, s.URL()+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz %d", code)
	}
	if code, body := get(t, s.URL()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nats: streams not applied yet") {
		t.Fatalf("readyz before provisioning: %d %q", code, body)
	}
	provisioned = nil
	if code, _ := get(t, s.URL()+"/readyz"); code != http.StatusOK {
		t.Fatalf("readyz after provisioning: %d", code)
	}
	if code, body := get(t, s.URL()+"/hello"); code != http.StatusOK || body != "hi" {
		t.Fatalf("route: %d %q", code, body)
	}
	if code, body := get(t, s.URL()+"/metrics"); code != http.StatusOK || !strings.Contains(body, `sluice_http_requests_total{code="200",route="/hello"} 1`) {
		t.Fatalf("metrics: %d\n%s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/healthz", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatal("server still answers after Stop")
	}
}

func TestRejectsDuplicateRoutesAndEmptyAddr(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := rpcserver.Route{Path: "/x", Handler: http.NotFoundHandler()}
	if _, err := rpcserver.New(rpcserver.Config{Addr: "127.0.0.1:0"}, log, nil, []rpcserver.Route{r, r}); err == nil {
		t.Fatal("two routes for one path accepted")
	}
	if _, err := rpcserver.New(rpcserver.Config{}, log, nil, nil); err == nil {
		t.Fatal("empty address accepted")
	}
}

// Server reflection lists the services and serves their descriptors, so
// grpcurl and `buf curl --reflect` need no protos.
func TestReflection(t *testing.T) {
	path, handler := buildv1connect.NewBuildServiceHandler(buildv1connect.UnimplementedBuildServiceHandler{})
	route := rpcserver.Route{Path: path, Handler: handler, Service: buildv1connect.BuildServiceName}
	s, err := rpcserver.New(rpcserver.Config{Addr: "127.0.0.1:0"}, slog.New(slog.NewTextHandler(io.Discard, nil)), rpcserver.NewReadiness(), []rpcserver.Route{route})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop(context.Background()) }()
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	defer h2c.CloseIdleConnections()
	stream := grpcreflect.NewClient(&http.Client{Transport: h2c}, s.URL(), connect.WithGRPC()).NewStream(t.Context())
	defer func() { _, _ = stream.Close() }()
	names, err := stream.ListServices()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, protoreflect.FullName(buildv1connect.BuildServiceName)) || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v", names)
	}
	files, err := stream.FileContainingSymbol(buildv1connect.BuildServiceName + ".GetBuild")
	if err != nil || len(files) == 0 || files[0].GetName() != "sluice/build/v1/build.proto" {
		t.Fatalf("descriptor of GetBuild: %v, %v", files, err)
	}
}
