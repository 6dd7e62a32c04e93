package build_test

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
	sourcev1 "github.com/sluicehq/sluice/proto/gen/sluice/source/v1"
	"github.com/sluicehq/sluice/services/build"
)

// A worker cut off from its database cannot renew its lease on the build:
// it stops the step once no renewal succeeded for two heartbeats, so the
// step has ended before another worker may take the build over.
func TestWorkerWhoseRenewalsFailStopsItsStep(t *testing.T) {
	t.Parallel()
	const heartbeat = 200 * time.Millisecond
	cfg := build.Config{Settings: servicekit.Settings{DatabaseURL: sqldbtest.URL(t)}, WorkerID: "worker-1", Heartbeat: heartbeat}
	h := newHarness(t, cfg)
	started, stopped := h.file(t, "started"), h.file(t, "stopped")
	repo := gitRepo(t, map[string]string{"main.go": "package main\n"})
	req := runRequest(repo, &sourcev1.BuildSpec{Steps: []*sourcev1.Step{{
		Name: "work",
		Run:  `[ -f "$STOPPED" ] && exit 0; trap 'touch "$STOPPED"; exit 143' TERM; touch "$STARTED"; sleep 60 & wait`,
		Env:  map[string]string{"STARTED": started, "STOPPED": stopped},
	}}})
	h.publish(t, req)
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }
	deadline := time.Now().Add(wait)
	for !exists(started) {
		if time.Now().After(deadline) {
			t.Fatal("the step did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The database stops answering the worker: a transaction of the test
	// holds the build's row (the whole database on SQLite) until the end.
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- h.db.InTx(context.Background(), func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(context.Background(), `UPDATE builds SET lease_expires_at = lease_expires_at WHERE run_id = $1`, req.GetRunId()); err != nil {
				return err
			}
			close(held)
			<-release
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("could not hold the build's row: %v", err)
	}
	cut := time.Now()
	defer func() {
		close(release)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// The last renewal that succeeded began at most a heartbeat before the
	// cut; the step gets SIGTERM two heartbeats after it. (Slack for a busy
	// machine.)
	bound := 2*heartbeat + 2*time.Second
	for !exists(stopped) {
		if time.Since(cut) > bound {
			t.Fatalf("the step still runs %s after its worker's renewals began to fail; want it stopped within %s", time.Since(cut), bound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
