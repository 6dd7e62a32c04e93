package runner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/platform/runner"
	"github.com/sluicehq/sluice/platform/runner/runnertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStopWaitsForLoops(t *testing.T) {
	g := runner.New(supervisor(t, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { t.Errorf("fail(%v)", err) })
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
	g := runner.New(supervisor(t, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), func(err error) { failed <- err })
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

// supervisor is a supervisor that restarts at once, logging to log (nil:
// nowhere), whose counter is in a registry of its own.
func supervisor(t *testing.T, log io.Writer) *runner.Supervisor {
	t.Helper()
	if log == nil {
		log = io.Discard
	}
	s, err := runner.NewSupervisor(slog.New(slog.NewJSONHandler(log, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s.Backoff.Initial, s.Backoff.Max = time.Millisecond, 10*time.Millisecond
	return s
}

// A loop that panics is logged with its stack, counted, and started again;
// the process goes on, and the restarted loop still stops with the group.
func TestPanickingLoopIsRestarted(t *testing.T) {
	// Read once the group stopped (Stop waits for the loop): no lock.
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	sup, err := runner.NewSupervisor(slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	sup.Backoff.Initial, sup.Backoff.Max = time.Millisecond, 10*time.Millisecond
	g := runner.New(sup, slog.New(slog.DiscardHandler), func(err error) { t.Errorf("fail(%v)", err) })
	var starts atomic.Int32
	ticks := make(chan struct{}, 100)
	g.Go("poll", func(ctx context.Context) error {
		if starts.Add(1) == 1 {
			panic("the first poll finds a bad value")
		}
		for {
			select {
			case <-ctx.Done():
				return nil
			case ticks <- struct{}{}:
				time.Sleep(time.Millisecond)
			}
		}
	})
	for range 3 {
		select {
		case <-ticks:
		case <-time.After(5 * time.Second):
			t.Fatal("the loop was not restarted after its panic")
		}
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := starts.Load(); n != 2 {
		t.Errorf("the loop started %d times; want 2 (once, and again after the panic)", n)
	}
	if got := runnertest.Panics(t, reg, "poll"); got != 1 {
		t.Errorf("sluice_goroutine_panics_total{task=poll} = %v; want 1", got)
	}
	for _, want := range []string{`"msg":"background goroutine panicked"`, `"task":"poll"`, "the first poll finds a bad value", `"stack":"goroutine`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, logs.String())
		}
	}
}

// A loop that panics again and again is restarted each time until the
// group stops, and Stop does not wait out a back-off.
func TestLoopThatAlwaysPanicsStopsWithTheGroup(t *testing.T) {
	sup := supervisor(t, nil)
	sup.Backoff.Initial, sup.Backoff.Max = time.Hour, time.Hour
	g := runner.New(sup, slog.New(slog.DiscardHandler), func(err error) { t.Errorf("fail(%v)", err) })
	started := make(chan struct{}, 1)
	g.Go("bad", func(context.Context) error {
		started <- struct{}{}
		panic("always")
	})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v (waited out the restart back-off?)", err)
	}
}

// Guard ends one job quietly: counted and logged, reported, not run
// again.
func TestGuardCountsAJob(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	sup, err := runner.NewSupervisor(slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	if !sup.Guard("delivery", func() { runs++; panic("bad delivery") }) {
		t.Error("Guard did not report the panic")
	}
	if sup.Guard("delivery", func() { runs++ }) {
		t.Error("Guard reported a panic of a job that did not panic")
	}
	if runs != 2 {
		t.Errorf("%d runs; want each job once", runs)
	}
	if got := runnertest.Panics(t, reg, "delivery"); got != 1 {
		t.Errorf("sluice_goroutine_panics_total{task=delivery} = %v; want 1", got)
	}
	if !strings.Contains(logs.String(), "bad delivery") {
		t.Errorf("the log lacks the panic: %s", logs.String())
	}
}

// A second supervisor on one registry is refused (two services must wrap
// the registry with their own labels).
func TestSupervisorRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := runner.NewSupervisor(slog.New(slog.DiscardHandler), reg); err != nil {
		t.Fatal(err)
	}
	if _, err := runner.NewSupervisor(slog.New(slog.DiscardHandler), reg); err == nil {
		t.Error("registered sluice_goroutine_panics_total twice")
	}
	reg = prometheus.NewRegistry()
	for _, svc := range []string{"build", "test"} {
		if _, err := runner.NewSupervisor(slog.New(slog.DiscardHandler), prometheus.WrapRegistererWith(prometheus.Labels{"service": svc}, reg)); err != nil {
			t.Errorf("%s: %v", svc, err)
		}
	}
}

// Try hands a goroutine's panic to the caller waiting for it as an error,
// counted and logged like Guard's, and returns fn's own error otherwise.
func TestTryReturnsAPanicAsAnError(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	sup, err := runner.NewSupervisor(slog.New(slog.NewJSONHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sup.Try("pack encoder", func() error { panic("bad object") }) }()
	err = <-done
	p, ok := runner.Panicked(fmt.Errorf("copy objects: %w", err))
	if !ok || p.Task != "pack encoder" || p.Value != "bad object" {
		t.Fatalf("Try returned %v; want the panic as a *runner.PanicError", err)
	}
	if got, want := err.Error(), "pack encoder panicked: bad object"; got != want {
		t.Errorf("error %q; want %q", got, want)
	}
	boom := errors.New("boom")
	if err := sup.Try("pack encoder", func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Try returned %v; want fn's own error", err)
	}
	if _, ok := runner.Panicked(boom); ok {
		t.Error("a plain error taken for a panic")
	}
	if got := runnertest.Panics(t, reg, "pack encoder"); got != 1 {
		t.Errorf("sluice_goroutine_panics_total{task=pack encoder} = %v; want 1", got)
	}
	if !strings.Contains(logs.String(), `"stack":"goroutine`) {
		t.Errorf("the log lacks the stack: %s", logs.String())
	}
	// Work that runs on a service's context finds its Supervisor there;
	// a nil one (none in the context) still recovers.
	ctx := runner.NewContext(context.Background(), sup)
	if runner.FromContext(ctx) != sup {
		t.Error("FromContext did not find the supervisor")
	}
	if err := runner.FromContext(context.Background()).Try("t", func() error { panic("x") }); err == nil {
		t.Error("a nil supervisor did not recover")
	}
}
