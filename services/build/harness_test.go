package build_test

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/fx/fxtest"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/fxkit"
	"github.com/sluicehq/sluice/platform/rpcserver"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/build/internal/buildtest"
)

// instance is one build service process: the fx module composed with a
// loopback Connect server and its own NATS connection, as sluice-build
// composes it.
type instance struct {
	cfg    build.Config
	nc     *nats.Conn
	client buildv1connect.BuildServiceClient
	db     *sqldb.DB // the service's database, opened by the test to watch the outbox
	stop   func()
}

func startInstance(t *testing.T, n *buildtest.NATS, cfg build.Config) *instance {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = sqldbtest.URL(t)
	}
	nc := n.Server.Connect(t)
	js := buildtest.JetStream(t, nc)
	var srv *rpcserver.Server
	app := fxtest.New(t,
		fx.WithLogger(func() fxevent.Logger { return fxevent.NopLogger }),
		fx.Supply(buildtest.Logger(t)),
		fx.Supply(nc),
		fx.Provide(func() jetstream.JetStream { return js }),
		fxkit.Server(rpcserver.Config{Addr: "127.0.0.1:0"}),
		build.Module(cfg),
		fx.Populate(&srv),
	)
	app.RequireStart()
	var once sync.Once
	inst := &instance{cfg: cfg.WithDefaults(), nc: nc, stop: func() { once.Do(app.RequireStop) }}
	t.Cleanup(inst.stop)

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	inst.client = buildv1connect.NewBuildServiceClient(&http.Client{Transport: tr}, srv.URL())

	db, err := sqldb.Open(context.Background(), inst.cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	inst.db = db

	// Ready once its streams and consumer are provisioned.
	buildtest.Eventually(t, "readiness", func() bool {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL()+"/readyz", nil)
		if err != nil {
			return false
		}
		res, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return inst
}

// settle waits until every run request was acknowledged and every event the
// service enqueued was published, so that what was published can be
// counted.
func settle(t *testing.T, n *buildtest.NATS, insts ...*instance) {
	t.Helper()
	ctx := t.Context()
	buildtest.Eventually(t, "run requests acknowledged and outboxes empty", func() bool {
		c, err := n.JS.Consumer(ctx, build.RunsStream, build.RunsConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		if err != nil || info.NumAckPending != 0 || info.NumPending != 0 {
			return false
		}
		for _, inst := range insts {
			if pending, err := events.Pending(ctx, inst.db); err != nil || pending != 0 {
				return false
			}
		}
		return true
	})
	// Published events reach the recorder's ordered consumer shortly after.
	time.Sleep(200 * time.Millisecond)
}

func (i *instance) build(t *testing.T, id string) *buildv1.Build {
	t.Helper()
	res, err := i.client.GetBuild(t.Context(), &buildv1.GetBuildRequest{Id: id})
	if err != nil {
		t.Fatalf("GetBuild(%s): %v", id, err)
	}
	return res.GetBuild()
}

func (i *instance) logs(t *testing.T, runID string) *buildv1.GetLogsResponse {
	t.Helper()
	res, err := i.client.GetLogs(t.Context(), &buildv1.GetLogsRequest{RunId: runID, Limit: 10000})
	if err != nil {
		t.Fatalf("GetLogs(%s): %v", runID, err)
	}
	return res
}

func workspaces(cfg build.Config) string { return filepath.Join(cfg.DataDir, "workspaces") }
