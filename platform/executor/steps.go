package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
)

// ErrNoContainers is the error of a stage that needs a container backend
// (a step names an image, or the stage has services) on a host where the
// service runs none. It is an ErrCannotStart.
var ErrNoContainers = CannotStart(errors.New("no container engine"))

// ErrCannotStart marks (errors.Is) the error of a step or a stage that no
// other try would start either: a shell or an image that is not there, an
// image the operator's rules refuse, a container the engine refuses. Other
// errors of Run and Open (an engine or a disk failing for a while) may
// pass on another try.
var ErrCannotStart = errors.New("cannot start")

// CannotStart marks err as an ErrCannotStart, its message as it is.
func CannotStart(err error) error { return cannotStart{err} }

type cannotStart struct{ error }

func (c cannotStart) Unwrap() error      { return c.error }
func (cannotStart) Is(target error) bool { return target == ErrCannotStart }

// Steps is the Backend the build and test services run their stages
// with: a step without an image runs on Local, one with an image on
// Containers.
type Steps struct {
	// Local runs the steps that name no image.
	Local Executor
	// Containers runs the steps that name an image, and the services;
	// nil when this host has no container engine, NoContainers saying why.
	Containers   Backend
	NoContainers string
}

var _ Backend = (*Steps)(nil)

// Open opens st. A stage that needs containers on a host without them
// fails at once, before any of its steps runs, with ErrNoContainers and
// the reason.
func (s *Steps) Open(ctx context.Context, st StageSpec) (Stage, error) {
	stage := &stepsStage{local: s.Local}
	if len(st.Images) == 0 && len(st.Services) == 0 {
		return stage, nil
	}
	if s.Containers == nil {
		return nil, s.noContainers(st)
	}
	cs, err := s.Containers.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	stage.containers = cs
	return stage, nil
}

// noContainers says which of st's steps and services need containers.
func (s *Steps) noContainers(st StageSpec) error {
	var need []string
	for _, name := range slices.Sorted(maps.Keys(st.Images)) {
		need = append(need, fmt.Sprintf("step %q runs in image %s", name, st.Images[name]))
	}
	for _, svc := range st.Services {
		need = append(need, fmt.Sprintf("service %q runs in image %s", svc.Name, svc.Image))
	}
	why := s.NoContainers
	if why == "" {
		why = "this service runs no container backend"
	}
	return fmt.Errorf("%w: %s, but %s", ErrNoContainers, strings.Join(need, "; "), why)
}

// stepsStage runs each step on the backend its Spec asks for.
type stepsStage struct {
	local      Executor
	containers Stage
}

func (s *stepsStage) Run(ctx context.Context, spec Spec) (Result, error) {
	if spec.Image == "" {
		return s.local.Run(ctx, spec)
	}
	if s.containers == nil {
		// Open was told of no such step.
		return Result{}, fmt.Errorf("executor: step %q: %w: its image %s was not declared when the stage was opened", spec.Name, ErrNoContainers, spec.Image)
	}
	return s.containers.Run(ctx, spec)
}

func (s *stepsStage) Close(ctx context.Context) error {
	if s.containers == nil {
		return nil
	}
	return s.containers.Close(ctx)
}

// Close releases the container backend's connection to its engine, if it
// has one to release; call it when the service stops.
func (s *Steps) Close() error {
	if c, ok := s.Containers.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// Sweeper is a Backend that can remove what stages left behind that no
// attempt will close: a stage whose worker died and that was never taken
// over (it was cancelled, or ended elsewhere), or a Close that failed.
type Sweeper interface {
	// Sweep removes what was started for stage more than grace ago, of
	// every run whose stage ended says has ended, and returns how many
	// runs it swept.
	Sweep(ctx context.Context, stage string, grace time.Duration, ended func(ctx context.Context, runID string) (bool, error)) (int, error)
}

// Sweep sweeps the container backend, if it is a Sweeper (see Sweeper).
func (s *Steps) Sweep(ctx context.Context, stage string, grace time.Duration, ended func(ctx context.Context, runID string) (bool, error)) (int, error) {
	if sw, ok := s.Containers.(Sweeper); ok {
		return sw.Sweep(ctx, stage, grace, ended)
	}
	return 0, nil
}

// Sweep intervals (SweepLoop).
const (
	SweepEvery = time.Minute
	SweepGrace = time.Minute
)

// SweepLoop sweeps b's stage every SweepEvery until ctx ends (a
// servicekit loop); a sweep that fails is logged and tried again at the
// next tick. A backend that is no Sweeper makes it wait for ctx.
func SweepLoop(b Backend, stage string, ended func(ctx context.Context, runID string) (bool, error), log *slog.Logger) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		sw, ok := b.(Sweeper)
		if !ok {
			<-ctx.Done()
			return nil
		}
		t := time.NewTicker(SweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			n, err := sw.Sweep(ctx, stage, SweepGrace, ended)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn("sweeping what ended stages left failed; trying again", slog.String("stage", stage), slog.Any("error", err))
			case n > 0:
				log.Info("removed what ended stages left", slog.String("stage", stage), slog.Int("runs", n))
			}
		}
	}
}
