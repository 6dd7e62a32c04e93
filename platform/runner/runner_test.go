package runner_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/runner"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStopWaitsForLoops(t *testing.T) {
	g := runner.New(slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { t.Errorf("fail(%v)", err) })
	stopped := make(chan struct{})
	g.Go("loop", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	})
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Stop returned before the loop ended")
	}
}

func TestFailingLoopCallsFail(t *testing.T) {
	failed := make(chan error, 1)
	g := runner.New(slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { failed <- err })
	boom := errors.New("boom")
	g.Go("bad", func(context.Context) error { return boom })
	select {
	case err := <-failed:
		if !errors.Is(err, boom) {
			t.Fatalf("fail got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fail not called")
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
