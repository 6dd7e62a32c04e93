package source

import (
	"context"
	"time"

	"go.uber.org/fx"
)

// ModuleWithService is Module, setting *svc to the service once it is
// made, so that a test can poll when it chooses (PollOnce).
func ModuleWithService(cfg Config, svc **Service) fx.Option {
	return module(cfg, fx.Invoke(func(s *Service) { *svc = s }))
}

// PollOnce polls every repository once, as each tick of Poll does.
func (s *Service) PollOnce(ctx context.Context) { s.pollOnce(ctx) }

// PruneOnce prunes the service's Expiries once, as each round of the
// service's pruning does.
func (s *Service) PruneOnce(ctx context.Context) error {
	for _, e := range s.Expiries() {
		if _, err := s.store.db.Prune(ctx, e, time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// ScheduleOnce fires the schedules due at now, as each tick of Schedule
// does.
func (s *Service) ScheduleOnce(ctx context.Context, now time.Time) { s.scheduleOnce(ctx, now) }
