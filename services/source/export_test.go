package source

import (
	"context"

	"go.uber.org/fx"
)

// ModuleWithService is Module, setting *svc to the service once it is
// made, so that a test can poll when it chooses (PollOnce).
func ModuleWithService(cfg Config, svc **Service) fx.Option {
	return module(cfg, fx.Invoke(func(s *Service) { *svc = s }))
}

// PollOnce polls every repository once, as each tick of Poll does.
func (s *Service) PollOnce(ctx context.Context) { s.pollOnce(ctx) }
