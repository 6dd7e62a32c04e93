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

// PruneAuditLogOnce prunes the audit log once, as each round of
// PruneAuditLog does.
func (s *Service) PruneAuditLogOnce(ctx context.Context) { s.pruneAuditLog(ctx) }
