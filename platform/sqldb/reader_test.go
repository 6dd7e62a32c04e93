package sqldb_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

// On SQLite a read through Reader is not queued behind the one writing
// connection: it answers while a write transaction is open, with the last
// committed state, and cannot write.
func TestSQLiteReadersReadWhileAWriteIsOpen(t *testing.T) {
	t.Parallel()
	db := openT(t, sqldbtest.SQLite)
	ctx := t.Context()
	if _, err := db.ExecContext(ctx, `INSERT INTO t (id, n, note) VALUES ('1', 1, 'committed')`); err != nil {
		t.Fatal(err)
	}
	inTx, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `UPDATE t SET note = 'uncommitted' WHERE id = '1'`); err != nil {
				return err
			}
			close(inTx)
			<-release
			return nil
		})
	}()
	<-inTx
	var name string
	if err := db.Reader().QueryRowContext(ctx, `SELECT note FROM t WHERE id = '1'`).Scan(&name); err != nil || name != "committed" {
		t.Errorf("read during the write: %q %v; want the committed state", name, err)
	}
	if _, err := db.Reader().ExecContext(ctx, `DELETE FROM t`); err == nil {
		t.Error("a write through the read pool succeeded")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := db.Reader().QueryRowContext(ctx, `SELECT note FROM t WHERE id = '1'`).Scan(&name); err != nil || name != "uncommitted" {
		t.Errorf("read after the commit: %q %v", name, err)
	}
}

// BenchmarkReadsWhileWriting is a point read while a writer commits
// transactions of 50 inserts (a log flush's size) without pause: through the writing connection (queued behind
// the writes) and through the read pool.
func BenchmarkReadsWhileWriting(b *testing.B) {
	for _, pool := range []string{"writer", "reader"} {
		b.Run(pool, func(b *testing.B) {
			db := openT(b, sqldbtest.SQLite)
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, `INSERT INTO t (id, n, note) VALUES ('1', 1, 'x')`); err != nil {
				b.Fatal(err)
			}
			q := db.DB
			if pool == "reader" {
				q = db.Reader()
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Go(func() {
				for n := 2; !stop.Load(); n += 50 {
					_ = db.InTx(ctx, func(tx *sql.Tx) error {
						for i := n; i < n+50; i++ {
							if _, err := tx.ExecContext(ctx, `INSERT INTO t (id, n) VALUES ($1, $2)`, fmt.Sprint(i), i); err != nil {
								return err
							}
						}
						return nil
					})
				}
			})
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var name string
				for pb.Next() {
					if err := q.QueryRowContext(ctx, `SELECT note FROM t WHERE id = '1'`).Scan(&name); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			stop.Store(true)
			wg.Wait()
		})
	}
}
