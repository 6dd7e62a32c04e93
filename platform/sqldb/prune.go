package sqldb

import (
	"context"
	"fmt"
	"time"
)

// Expiry is a table whose rows are kept for a while and then deleted: a
// record of what was seen (processed events, webhook deliveries) that is
// of no use once what it guards against can no longer happen.
type Expiry struct {
	// Table and Column name the rows and their time (Unix nanoseconds, as
	// Nanos stores it); the column should be indexed.
	Table, Column string
	// Keep is how long a row is kept.
	Keep time.Duration
}

// pruneBatch bounds one DELETE, so a large backlog never holds the
// database (SQLite has one writer) for long.
const pruneBatch = 1000

// Prune deletes the rows of e older than now minus e.Keep, a batch at a
// time, and returns how many it deleted.
func (db *DB) Prune(ctx context.Context, e Expiry, now time.Time) (int64, error) {
	before := now.Add(-e.Keep).UnixNano()
	// Rows that share a time are deleted together; they are all old.
	stmt := fmt.Sprintf(`DELETE FROM %[1]s WHERE %[2]s IN (SELECT %[2]s FROM %[1]s WHERE %[2]s < $1 ORDER BY %[2]s LIMIT %[3]d)`,
		e.Table, e.Column, pruneBatch)
	var total int64
	for {
		res, err := db.ExecContext(ctx, stmt, before)
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", e.Table, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune %s: %w", e.Table, err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
