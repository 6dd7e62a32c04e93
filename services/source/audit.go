package source

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/paging"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// auditConsumer is the durable consumer of every service's audit entries
// (deploy/nats/consumers/source/source-audit.json).
const auditConsumer = "source-audit"

// auditPruneInterval is how often entries older than the retention are
// deleted.
const auditPruneInterval = time.Hour

// KeepAuditEntry stores an audit entry a service published, once: the
// entry's id is the key, so a redelivered or re-published entry is kept
// once. An entry whose subject names another service than the entry says
// is refused: NATS lets each service publish only under its own name, so
// the subject is the one to believe.
func (s *Service) KeepAuditEntry(ctx context.Context, ev events.Event) error {
	entry, ok := ev.Payload.(*auditv1.AuditEntry)
	if !ok {
		return fmt.Errorf("%w: %s carries %T, not an audit entry", events.ErrInvalidEvent, ev.Kind.Type, ev.Payload)
	}
	if entry.GetService() != ev.Kind.Service {
		return fmt.Errorf("%w: an audit entry of %q published by %q", events.ErrInvalidEvent, entry.GetService(), ev.Kind.Service)
	}
	return s.store.InsertAuditEntry(ctx, auditEntryFromProto(entry))
}

// ListAuditEntries lists a page of the audit log, newest first; a token
// limited to repositories sees only its repositories' entries.
func (s *Service) ListAuditEntries(ctx context.Context, f domain.AuditFilter, page paging.Page) ([]domain.AuditEntry, string, error) {
	if only, limited := auth.Repositories(ctx); limited {
		f.Only = only
	}
	entries, err := s.store.ListAuditEntries(ctx, f, page)
	if err != nil {
		return nil, "", err
	}
	entries, next := paging.Cut(page, entries, func(e domain.AuditEntry) paging.Cursor {
		return paging.Cursor{Time: e.Time.UnixNano(), ID: e.ID}
	})
	return entries, next, nil
}

// PruneAuditLog deletes the entries older than the audit retention, at
// start and then every auditPruneInterval, until ctx ends. A failure is
// logged and tried again at the next round.
func (s *Service) PruneAuditLog(ctx context.Context) error {
	t := time.NewTicker(auditPruneInterval)
	defer t.Stop()
	for {
		s.pruneAuditLog(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// pruneAuditLog deletes the entries older than the retention once.
func (s *Service) pruneAuditLog(ctx context.Context) {
	n, err := s.store.DeleteAuditEntriesBefore(ctx, time.Now().Add(-s.cfg.AuditRetention))
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn("pruning the audit log failed; trying again later", slog.Any("error", err))
	case n > 0:
		s.log.Info("audit log pruned", slog.Int64("entries", n), slog.Duration("retention", s.cfg.AuditRetention))
	}
}
