package source

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/sqldb"
	auditv1 "github.com/sluicehq/sluice/proto/gen/sluice/audit/v1"
	"github.com/sluicehq/sluice/services/source/domain"
)

// auditConsumer is the durable consumer of every service's audit entries
// (deploy/nats/consumers/source/source-audit.json).
const auditConsumer = "source-audit"

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

// Expiries are the source service's records kept for a while, pruned
// with the processed events (servicekit.Parts.Expiries): the audit log's
// entries for audit-retention, and the webhook deliveries seen, kept
// for WebhookDeliveryRetention so that a forge's redelivery of one starts
// no second run.
func (s *Service) Expiries() []sqldb.Expiry {
	return []sqldb.Expiry{
		{Table: "audit_log", Column: "time", Keep: s.cfg.AuditRetention},
		{Table: "webhook_deliveries", Column: "received_at", Keep: WebhookDeliveryRetention},
	}
}

// WebhookDeliveryRetention is how long a webhook delivery's id is kept:
// forges redeliver for days (GitHub lets a delivery of the last 3 days be
// redelivered).
const WebhookDeliveryRetention = 30 * 24 * time.Hour
