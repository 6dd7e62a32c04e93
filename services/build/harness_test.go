package build_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/servicekit/servicekittest"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	buildv1 "github.com/sluicehq/sluice/proto/gen/sluice/build/v1"
	"github.com/sluicehq/sluice/proto/gen/sluice/build/v1/buildv1connect"
	"github.com/sluicehq/sluice/services/build"
	"github.com/sluicehq/sluice/services/build/internal/buildtest"
)

// instance is one build service process, composed as sluice-build
// composes it (servicekittest).
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
	cfg = cfg.WithDefaults()
	p := servicekittest.Start(t, n.Server.URL, servicekittest.Options{Log: buildtest.Logger(t)}, build.Module(cfg))
	return &instance{
		cfg:    cfg,
		nc:     p.NATS,
		client: buildv1connect.NewBuildServiceClient(p.Client, p.URL),
		db:     servicekittest.OpenDBAt(t, cfg.DatabaseURL),
		stop:   p.Stop,
	}
}

// settle waits until every run request was acknowledged and every event the
// service enqueued was published, so that what was published can be
// counted.
func settle(t *testing.T, n *buildtest.NATS, insts ...*instance) {
	t.Helper()
	ctx := t.Context()
	buildtest.Eventually(t, "run requests acknowledged and outboxes empty", func() bool {
		c, err := n.JS.Consumer(ctx, "SOURCE", build.RunsConsumer)
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
