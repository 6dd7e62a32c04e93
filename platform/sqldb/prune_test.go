package sqldb_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

// Prune deletes the rows older than the kept time, over several batches,
// and only those.
func TestPruneDeletesOnlyExpiredRows(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, store string) {
		db := openT(t, store)
		ctx := t.Context()
		now := time.Unix(1_800_000_000, 0)
		// 2500 rows a day old and older (more than two batches; some share
		// a time), 10 rows newer than the kept hour.
		for i := range 2500 {
			at := now.Add(-24*time.Hour - time.Duration(i/2)*time.Second)
			if _, err := db.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ($1, $2)`, fmt.Sprintf("old-%d", i), at.UnixNano()); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10 {
			at := now.Add(-time.Duration(i) * time.Minute)
			if _, err := db.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ($1, $2)`, fmt.Sprintf("new-%d", i), at.UnixNano()); err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.Prune(ctx, sqldb.Expiry{Table: "t", Column: "n", Keep: time.Hour}, now)
		if err != nil || n != 2500 {
			t.Fatalf("Prune = %d, %v; want the 2500 old rows", n, err)
		}
		var left int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM t WHERE id LIKE 'new-%'`).Scan(&left); err != nil || left != 10 {
			t.Fatalf("%d new rows left (%v); want all 10", left, err)
		}
		if n, err := db.Prune(ctx, sqldb.Expiry{Table: "t", Column: "n", Keep: time.Hour}, now); err != nil || n != 0 {
			t.Fatalf("second Prune = %d, %v; want nothing to do", n, err)
		}
	})
}
