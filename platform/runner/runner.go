// Package runner runs a component's background loops for the lifetime of
// the process: started from an fx OnStart hook, stopped (and waited for)
// from OnStop; a loop that fails stops the whole process, and a loop that
// panics is restarted (Supervisor).
package runner

import (
	"context"
	"log/slog"
	"sync"
)

// Group is a set of background loops.
type Group struct {
	log    *slog.Logger
	sup    *Supervisor
	fail   func(error)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New makes a group whose loops run under sup; fail is called when a loop
// returns an error before Stop (pass a function that shuts the process
// down).
func New(sup *Supervisor, log *slog.Logger, fail func(error)) *Group {
	ctx, cancel := context.WithCancel(context.Background())
	return &Group{log: log, sup: sup, fail: fail, ctx: ctx, cancel: cancel}
}

// Go starts fn in the background, under the group's Supervisor: a panic
// in fn is logged and counted, and fn starts again after a back-off. fn
// must return when its context ends.
func (g *Group) Go(name string, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := g.sup.Run(g.ctx, name, fn)
		if err != nil && g.ctx.Err() == nil {
			g.log.Error("component failed; stopping", slog.String("component", name), slog.Any("error", err))
			if g.fail != nil {
				g.fail(err)
			}
		}
	}()
}

// Context is cancelled when the group stops.
func (g *Group) Context() context.Context { return g.ctx }

// Stop cancels every loop and waits for them, or for ctx to end.
func (g *Group) Stop(ctx context.Context) error {
	g.cancel()
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
