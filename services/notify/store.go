package notify

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/audit"
	"github.com/sluicehq/sluice/platform/events"
	"github.com/sluicehq/sluice/platform/paging"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/services/notify/domain"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations are notify's tables.
func Migrations() sqldb.Migrations {
	return sqldb.Embedded("notify", migrationFiles)
}

// Store is notify's database: subscriptions, deliveries and their
// attempts, plus the events outbox and processed-event ids.
type Store struct {
	db *sqldb.DB
}

// NewStore keeps the service's records in db, which has the Migrations
// (servicekit opens and migrates it on start).
func NewStore(db *sqldb.DB) *Store { return &Store{db: db} }

// CreateSubscription stores sub.
func (s *Store) CreateSubscription(ctx context.Context, sub domain.Subscription) error {
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO subscriptions (id, url, secret, event_types, repository, created_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			sub.ID, sub.URL, sub.Secret, sqldb.StringList(sub.EventTypes), sub.Repository, sqldb.Nanos(sub.CreatedAt))
		if err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Target{Repository: sub.Repository, ID: sub.ID})
	})
	if err != nil {
		if sqldb.IsUniqueViolation(err) {
			return fmt.Errorf("subscription %s: %w", sub.ID, apierror.ErrAlreadyExists)
		}
		return fmt.Errorf("insert subscription: %w", err)
	}
	return nil
}

const subscriptionColumns = `id, url, secret, event_types, repository, created_at`

type scanner interface{ Scan(dest ...any) error }

func scanSubscription(row scanner) (domain.Subscription, error) {
	var (
		sub     domain.Subscription
		created int64
	)
	if err := row.Scan(&sub.ID, &sub.URL, &sub.Secret, (*sqldb.StringList)(&sub.EventTypes), &sub.Repository, &created); err != nil {
		return sub, err
	}
	sub.CreatedAt = sqldb.Time(created)
	return sub, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func querySubscriptions(ctx context.Context, q querier, query string, args ...any) ([]domain.Subscription, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read subscriptions: %w", err)
	}
	defer rows.Close()
	var subs []domain.Subscription
	for rows.Next() {
		sub, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("read subscriptions: %w", err)
		}
		subs = append(subs, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read subscriptions: %w", err)
	}
	return subs, nil
}

// ListSubscriptions lists a page of subscriptions, oldest first:
// page.Limit() of them at most, after page.After.
func (s *Store) ListSubscriptions(ctx context.Context, scope Scope, page paging.Page) ([]domain.Subscription, error) {
	where, args := scope.where("repository", nil, nil)
	after, afterArgs := page.Where("created_at", "id", false, len(args)+1)
	where = append(where, after)
	args = append(append(args, afterArgs...), page.Limit())
	return querySubscriptions(ctx, s.db,
		`SELECT `+subscriptionColumns+` FROM subscriptions WHERE `+strings.Join(where, " AND ")+` ORDER BY created_at, id LIMIT $`+strconv.Itoa(len(args)),
		args...)
}

// Subscription finds a subscription by id.
func (s *Store) Subscription(ctx context.Context, id string) (domain.Subscription, error) {
	sub, err := scanSubscription(s.db.QueryRowContext(ctx, `SELECT `+subscriptionColumns+` FROM subscriptions WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return sub, fmt.Errorf("subscription %q: %w", id, apierror.ErrNotFound)
	}
	if err != nil {
		return sub, fmt.Errorf("read subscription %q: %w", id, err)
	}
	return sub, nil
}

// DeleteSubscription deletes a subscription and drops its pending
// deliveries (dead, with domain.ReasonSubscriptionDeleted). Delivered and
// dead deliveries stay listed.
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		var repository string
		err := tx.QueryRowContext(ctx, `DELETE FROM subscriptions WHERE id = $1 RETURNING repository`, id).Scan(&repository)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("subscription %q: %w", id, apierror.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete subscription: %w", err)
		}
		if err := audit.Record(ctx, tx, audit.Target{Repository: repository, ID: id}); err != nil {
			return err
		}
		return dropPending(ctx, tx, `subscription_id = $2`, id)
	})
}

// dropPending marks the pending deliveries selected by where ($2 is arg)
// dead because their subscription is gone.
func dropPending(ctx context.Context, tx *sql.Tx, where, arg string) error {
	_, err := tx.ExecContext(ctx,
		`UPDATE deliveries SET status = $1, last_error = $3, next_attempt_at = 0 WHERE `+where+` AND status = $4`,
		string(domain.StatusDead), arg, domain.ReasonSubscriptionDeleted, string(domain.StatusPending))
	if err != nil {
		return fmt.Errorf("drop pending deliveries: %w", err)
	}
	return nil
}

// FanOut records that consumer handled the event of template and, the
// first time only, creates a pending delivery due at now for every
// subscription that wants it, all in one transaction. template carries the
// event's fields; ID and SubscriptionID are filled in per subscription by
// newID. It returns how many deliveries it created.
//
// What the event asks of a forge (work) is queued in the same
// transaction.
func (s *Store) FanOut(ctx context.Context, consumer string, template domain.Delivery, work forgeWork, now time.Time, newID func() string) (int, error) {
	headers, err := json.Marshal(template.Headers)
	if err != nil {
		return 0, fmt.Errorf("encode headers: %w", err)
	}
	created := 0
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		created = 0
		first, err := events.MarkProcessed(ctx, tx, consumer, template.EventID)
		if err != nil || !first {
			return err
		}
		if work.status != nil {
			if err := queueForgeStatus(ctx, tx, *work.status, now); err != nil {
				return err
			}
		}
		if work.release != nil {
			if err := queueForgeRelease(ctx, tx, *work.release, now); err != nil {
				return err
			}
		}
		subs, err := querySubscriptions(ctx, tx,
			`SELECT `+subscriptionColumns+` FROM subscriptions WHERE repository = '' OR repository = $1 ORDER BY created_at, id`,
			template.Repository)
		if err != nil {
			return err
		}
		for _, sub := range subs {
			if !sub.Matches(template.EventType, template.Repository) {
				continue
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO deliveries (id, subscription_id, event_id, event_type, event_subject,
				repository, chain_id, headers, body, status, attempt_count, last_error, created_at, next_attempt_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, '', $11, $11)
				ON CONFLICT (subscription_id, event_id) DO NOTHING`,
				newID(), sub.ID, template.EventID, template.EventType, template.Subject,
				template.Repository, template.ChainID, string(headers), string(template.Body),
				string(domain.StatusPending), sqldb.Nanos(now))
			if err != nil {
				return fmt.Errorf("insert delivery for subscription %s: %w", sub.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("insert delivery for subscription %s: %w", sub.ID, err)
			} else if n == 1 {
				created++
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("fan out event %s: %w", template.EventID, err)
	}
	return created, nil
}

// Claimed is a delivery a worker took, with where to send it.
type Claimed struct {
	Delivery domain.Delivery
	URL      string
	Secret   string
}

// Claim takes up to limit pending deliveries due at now and leases them
// until leaseUntil (their next_attempt_at), so that no other worker takes
// them meanwhile and they are taken again if this one dies. Deliveries
// whose subscription is gone are dropped instead.
func (s *Store) Claim(ctx context.Context, now, leaseUntil time.Time, limit int) ([]Claimed, error) {
	var claimed []Claimed
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		claimed = nil
		candidates, err := dueDeliveries(ctx, tx, now, limit)
		if err != nil {
			return err
		}
		for _, d := range candidates {
			res, err := tx.ExecContext(ctx,
				`UPDATE deliveries SET next_attempt_at = $1 WHERE id = $2 AND status = $3 AND next_attempt_at = $4`,
				sqldb.Nanos(leaseUntil), d.id, string(domain.StatusPending), d.next)
			if err != nil {
				return fmt.Errorf("lease delivery %s: %w", d.id, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("lease delivery %s: %w", d.id, err)
			} else if n == 0 {
				continue // another worker took it
			}
			c, err := loadClaimed(ctx, tx, d.id)
			if errors.Is(err, apierror.ErrNotFound) {
				// Its subscription is gone.
				if err := dropPending(ctx, tx, `id = $2`, d.id); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			claimed = append(claimed, c)
		}
		return nil
	})
	return claimed, err
}

type due struct {
	id   string
	next int64
}

func dueDeliveries(ctx context.Context, tx *sql.Tx, now time.Time, limit int) ([]due, error) {
	rows, err := tx.QueryContext(ctx,
		`SELECT id, next_attempt_at FROM deliveries WHERE status = $1 AND next_attempt_at <= $2
		ORDER BY next_attempt_at, id LIMIT $3`,
		string(domain.StatusPending), sqldb.Nanos(now), limit)
	if err != nil {
		return nil, fmt.Errorf("find due deliveries: %w", err)
	}
	defer rows.Close()
	var list []due
	for rows.Next() {
		var d due
		if err := rows.Scan(&d.id, &d.next); err != nil {
			return nil, fmt.Errorf("find due deliveries: %w", err)
		}
		list = append(list, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find due deliveries: %w", err)
	}
	return list, nil
}

// loadClaimed reads a delivery with its subscription's URL and secret; a
// delivery whose subscription is gone is not found.
func loadClaimed(ctx context.Context, tx *sql.Tx, id string) (Claimed, error) {
	var (
		c              Claimed
		headers, body  string
		url, secret    sql.NullString
		created, next  int64
		status         string
		subscriptionID string
	)
	d := &c.Delivery
	err := tx.QueryRowContext(ctx, `SELECT d.id, d.subscription_id, d.event_id, d.event_type, d.event_subject, d.repository,
		d.chain_id, d.headers, d.body, d.status, d.attempt_count, d.last_error, d.created_at, d.next_attempt_at, s.url, s.secret
		FROM deliveries d LEFT JOIN subscriptions s ON s.id = d.subscription_id WHERE d.id = $1`, id).
		Scan(&d.ID, &subscriptionID, &d.EventID, &d.EventType, &d.Subject, &d.Repository, &d.ChainID, &headers, &body,
			&status, &d.AttemptCount, &d.LastError, &created, &next, &url, &secret)
	if err != nil {
		return c, fmt.Errorf("load delivery %s: %w", id, err)
	}
	d.SubscriptionID = subscriptionID
	d.Status = domain.Status(status)
	d.CreatedAt, d.NextAttemptAt = sqldb.Time(created), sqldb.Time(next)
	d.Body = []byte(body)
	if err := json.Unmarshal([]byte(headers), &d.Headers); err != nil {
		return c, fmt.Errorf("delivery %s headers: %w", id, err)
	}
	if !url.Valid {
		return c, fmt.Errorf("subscription %s of delivery %s: %w", subscriptionID, id, apierror.ErrNotFound)
	}
	c.URL, c.Secret = url.String, secret.String
	return c, nil
}

// NextDue is when the earliest pending delivery is due (or its lease
// ends); with none pending, it is not found.
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	return s.nextDue(ctx, "deliveries", "delivery")
}

// nextDue is when the earliest pending row of table (deliveries,
// forge_statuses or forge_releases: each has status and next_attempt_at)
// is due; with none, what is not found.
func (s *Store) nextDue(ctx context.Context, table, what string) (time.Time, error) {
	var next sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MIN(next_attempt_at) FROM `+table+` WHERE status = $1`,
		string(domain.StatusPending)).Scan(&next)
	if err != nil {
		return time.Time{}, fmt.Errorf("find the next due %s: %w", what, err)
	}
	if !next.Valid {
		return time.Time{}, fmt.Errorf("pending %s: %w", what, apierror.ErrNotFound)
	}
	return sqldb.Time(next.Int64), nil
}

// Outcome is what an attempt led to.
type Outcome struct {
	Status domain.Status
	// NextAttemptAt is when a pending delivery is tried again.
	NextAttemptAt time.Time
	// Event, when set, is published through the outbox with the change.
	Event *events.Event
}

// RecordAttempt stores attempt a of delivery id and, if the delivery is
// still pending (its subscription may have been deleted meanwhile), moves
// it to the outcome and enqueues the outcome's event, in one transaction.
// It reports whether the delivery changed.
func (s *Store) RecordAttempt(ctx context.Context, id string, a domain.Attempt, o Outcome) (bool, error) {
	changed := false
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		changed = false
		_, err := tx.ExecContext(ctx, `INSERT INTO delivery_attempts (delivery_id, number, started_at, http_status, error, duration_ns)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			id, a.Number, sqldb.Nanos(a.Time), a.HTTPStatus, a.Error, int64(a.Duration))
		if err != nil {
			return fmt.Errorf("record attempt %d of delivery %s: %w", a.Number, id, err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = $1, attempt_count = $2, last_error = $3, next_attempt_at = $4
			WHERE id = $5 AND status = $6`,
			string(o.Status), a.Number, a.Error, sqldb.Nanos(o.NextAttemptAt), id, string(domain.StatusPending))
		if err != nil {
			return fmt.Errorf("update delivery %s: %w", id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("update delivery %s: %w", id, err)
		}
		if n == 0 {
			return nil
		}
		changed = true
		if o.Event != nil {
			return events.Enqueue(ctx, tx, *o.Event)
		}
		return nil
	})
	return changed, err
}

// DeliveryFilter selects deliveries; an empty field selects all.
type DeliveryFilter struct {
	SubscriptionID string
	// RunID is the chain id of the delivered events.
	RunID string
	// Scope keeps the list to the caller's repositories.
	Scope Scope
}

// ListDeliveries lists a page of the deliveries filter selects, newest
// first, with their attempts: page.Limit() of them at most, after
// page.After.
func (s *Store) ListDeliveries(ctx context.Context, filter DeliveryFilter, page paging.Page) ([]domain.Delivery, error) {
	var where []string
	var args []any
	if filter.SubscriptionID != "" {
		args = append(args, filter.SubscriptionID)
		where = append(where, `subscription_id = $`+strconv.Itoa(len(args)))
	}
	if filter.RunID != "" {
		args = append(args, filter.RunID)
		where = append(where, `chain_id = $`+strconv.Itoa(len(args)))
	}
	// A limited caller sees the deliveries of its repositories' events to
	// the subscriptions it may see (those of its repositories).
	where, args = filter.Scope.where("repository", where, args)
	if filter.Scope.Limited {
		var sub []string
		sub, args = filter.Scope.where("repository", nil, args)
		where = append(where, `subscription_id IN (SELECT id FROM subscriptions WHERE `+strings.Join(sub, " AND ")+`)`)
	}
	after, afterArgs := page.Where("created_at", "id", true, len(args)+1)
	where = append(where, after)
	args = append(args, afterArgs...)
	args = append(args, page.Limit())
	query := `SELECT id, subscription_id, event_id, event_type, event_subject, repository, chain_id, status,
		attempt_count, last_error, created_at, next_attempt_at FROM deliveries WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY created_at DESC, id DESC LIMIT $` + strconv.Itoa(len(args))
	list, byID, err := s.queryDeliveries(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	if err := s.attachAttempts(ctx, list, byID); err != nil {
		return nil, err
	}
	return list, nil
}

func (s *Store) queryDeliveries(ctx context.Context, query string, args ...any) ([]domain.Delivery, map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("list deliveries: %w", err)
	}
	defer rows.Close()
	var list []domain.Delivery
	byID := map[string]int{}
	for rows.Next() {
		var (
			d             domain.Delivery
			status        string
			created, next int64
		)
		if err := rows.Scan(&d.ID, &d.SubscriptionID, &d.EventID, &d.EventType, &d.Subject, &d.Repository, &d.ChainID,
			&status, &d.AttemptCount, &d.LastError, &created, &next); err != nil {
			return nil, nil, fmt.Errorf("list deliveries: %w", err)
		}
		d.Status = domain.Status(status)
		d.CreatedAt, d.NextAttemptAt = sqldb.Time(created), sqldb.Time(next)
		byID[d.ID] = len(list)
		list = append(list, d)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list deliveries: %w", err)
	}
	return list, byID, nil
}

func (s *Store) attachAttempts(ctx context.Context, list []domain.Delivery, byID map[string]int) error {
	placeholders := make([]string, len(list))
	args := make([]any, len(list))
	for i, d := range list {
		placeholders[i] = "$" + strconv.Itoa(i+1)
		args[i] = d.ID
	}
	rows, err := s.db.QueryContext(ctx, `SELECT delivery_id, number, started_at, http_status, error, duration_ns
		FROM delivery_attempts WHERE delivery_id IN (`+strings.Join(placeholders, ", ")+`) ORDER BY delivery_id, number`, args...)
	if err != nil {
		return fmt.Errorf("list attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id       string
			a        domain.Attempt
			started  int64
			duration int64
		)
		if err := rows.Scan(&id, &a.Number, &started, &a.HTTPStatus, &a.Error, &duration); err != nil {
			return fmt.Errorf("list attempts: %w", err)
		}
		a.Time, a.Duration = sqldb.Time(started), time.Duration(duration)
		i, ok := byID[id]
		if !ok {
			return errors.New("list attempts: attempt of an unlisted delivery")
		}
		list[i].Attempts = append(list[i].Attempts, a)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list attempts: %w", err)
	}
	return nil
}
