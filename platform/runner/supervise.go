package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/platform/retry"
)

// RestartBackoff paces the restarts of a loop that keeps panicking: 1 s
// after the first panic, doubling up to a minute. A loop that ran
// RestartBackoff.Max without panicking starts the schedule again.
var RestartBackoff = retry.Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.2}

// Supervisor keeps a bad value from killing the process: a background loop
// that panics is recovered, logged at error level with its stack, counted
// in sluice_goroutine_panics_total{task}, and started again after a
// back-off. Every long-lived background goroutine of a service runs under
// one (Group.Go does it for the service's loops). A goroutine of one
// request is not its business: Connect's recover handles those.
//
// A nil *Supervisor works: it logs to slog.Default and counts nowhere
// (for code that is not wired into a service, such as a test's).
type Supervisor struct {
	log    *slog.Logger
	panics *prometheus.CounterVec
	// Backoff paces the restarts (RestartBackoff unless changed before
	// the first Run).
	Backoff retry.Backoff
}

// NewSupervisor makes a supervisor that logs to log and registers its
// counter with reg (nil: panics are logged, not counted).
func NewSupervisor(log *slog.Logger, reg prometheus.Registerer) (*Supervisor, error) {
	panics := newPanics()
	if reg != nil {
		if err := reg.Register(panics); err != nil {
			return nil, fmt.Errorf("runner: register sluice_goroutine_panics_total: %w", err)
		}
	}
	return &Supervisor{log: log, panics: panics, Backoff: RestartBackoff}, nil
}

func newPanics() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_goroutine_panics_total",
		Help: "Panics recovered in background loops (restarted after a back-off) and in goroutines of one job, by task.",
	}, []string{"task"})
}

// or is s, or for a nil s one that logs to slog.Default and counts
// nowhere.
func (s *Supervisor) or() *Supervisor {
	if s != nil {
		return s
	}
	return &Supervisor{log: slog.Default(), panics: newPanics(), Backoff: RestartBackoff}
}

// Run runs fn until it returns, and returns what it returned. A panic in
// fn is recovered, logged and counted, and fn runs again once the back-off
// passed; if ctx ends first, Run returns nil. fn must return when ctx ends.
func (s *Supervisor) Run(ctx context.Context, task string, fn func(context.Context) error) error {
	s = s.or()
	panicsInARow := 0
	for {
		started := time.Now()
		panicked, err := s.once(ctx, task, fn)
		if !panicked {
			return err
		}
		if time.Since(started) >= s.Backoff.Max {
			panicsInARow = 0
		}
		panicsInARow++
		wait := s.Backoff.Delay(panicsInARow)
		s.log.Warn("restarting a background loop after its panic", slog.String("task", task), slog.Duration("in", wait))
		if !retry.Sleep(ctx, wait) {
			return nil
		}
	}
}

func (s *Supervisor) once(ctx context.Context, task string, fn func(context.Context) error) (panicked bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			s.recovered(task, v)
			panicked, err = true, nil
		}
	}()
	return false, fn(ctx)
}

// Guard runs fn, one job of a goroutine that is not a loop (a delivery
// attempt, a reader of one watch): a panic in it is recovered, logged with
// its stack and counted, and Guard reports it; fn is not run again.
func (s *Supervisor) Guard(task string, fn func()) (panicked bool) {
	return s.Try(task, func() error { fn(); return nil }) != nil
}

// Try runs fn, the work of a short-lived goroutine whose caller waits for
// its result (the pack encoder of a checkout, the reader of a step's
// report, the handling of one event): a panic in fn is recovered, logged
// with its stack and counted like Guard's, and returned as a *PanicError,
// so that the work fails and its caller is told why instead of the
// process crashing; otherwise Try returns what fn returned. Every such
// goroutine has one shape:
//
//	go func() { done <- sup.Try("task", fn) }()
func (s *Supervisor) Try(task string, fn func() error) (err error) {
	s = s.or()
	defer func() {
		if v := recover(); v != nil {
			s.recovered(task, v)
			err = &PanicError{Task: task, Value: v}
		}
	}()
	return fn()
}

// PanicError is a panic that Try recovered; the stack went to the log.
type PanicError struct {
	Task  string
	Value any
}

func (e *PanicError) Error() string { return fmt.Sprintf("%s panicked: %v", e.Task, e.Value) }

// Panicked reports whether err is, or wraps, a panic that Try recovered,
// and returns it.
func Panicked(err error) (*PanicError, bool) {
	var p *PanicError
	ok := errors.As(err, &p)
	return p, ok
}

type supervisorKey struct{}

// NewContext is ctx carrying s, for work that runs on a context its
// service gave it but has no Supervisor of its own (a checkout, a step run
// by a consumer's handler): FromContext finds it.
func NewContext(ctx context.Context, s *Supervisor) context.Context {
	return context.WithValue(ctx, supervisorKey{}, s)
}

// FromContext is the Supervisor ctx carries (NewContext), or nil, which
// works (see Supervisor).
func FromContext(ctx context.Context) *Supervisor {
	s, _ := ctx.Value(supervisorKey{}).(*Supervisor)
	return s
}

func (s *Supervisor) recovered(task string, v any) {
	s.panics.WithLabelValues(task).Inc()
	s.log.Error("background goroutine panicked", slog.String("task", task), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
}
