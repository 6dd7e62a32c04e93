package sqldb_test

import (
	"context"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

func TestStringListRoundTrip(t *testing.T) {
	sqldbtest.Each(t, func(t *testing.T, store string) {
		ctx := context.Background()
		db, err := sqldb.Open(ctx, sqldbtest.URLFor(t, store), sqldb.Migrations{Name: "lists", FS: fstest.MapFS{
			"001.sql": {Data: []byte("CREATE TABLE lists (id TEXT PRIMARY KEY, items TEXT NOT NULL);")},
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		for name, in := range map[string][]string{
			"nil":   nil,
			"empty": {},
			"lines": {"ok", "", "quote \" and \\ and\nnewline"},
			// Process output: a NUL byte and invalid UTF-8 must not fail the
			// insert on PostgreSQL.
			"raw bytes": {"nul \x00 here", "bad \xff\xfe"},
		} {
			if _, err := db.ExecContext(ctx, `INSERT INTO lists (id, items) VALUES ($1, $2)`, name, sqldb.StringList(in)); err != nil {
				t.Fatalf("%s: insert: %v", name, err)
			}
			var raw string
			if err := db.QueryRowContext(ctx, `SELECT items FROM lists WHERE id = $1`, name).Scan(&raw); err != nil {
				t.Fatal(err)
			}
			if len(in) == 0 && raw != "[]" {
				t.Errorf("%s: stored %q; want []", name, raw)
			}
			var got []string
			if err := db.QueryRowContext(ctx, `SELECT items FROM lists WHERE id = $1`, name).Scan((*sqldb.StringList)(&got)); err != nil {
				t.Fatalf("%s: scan: %v", name, err)
			}
			if got == nil {
				t.Errorf("%s: read back nil; want an empty list", name)
			}
			want := in
			if name == "raw bytes" {
				want = []string{"nul \x00 here", "bad \uFFFD\uFFFD"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: read back %q; want %q", name, got, want)
			}
		}
	})
}

func TestStringListScanRefusesWhatItDidNotWrite(t *testing.T) {
	t.Parallel()
	var l sqldb.StringList
	for _, src := range []any{"not json", `{"a": 1}`, `[1, 2]`, int64(3)} {
		if err := l.Scan(src); err == nil {
			t.Errorf("Scan(%#v) = nil; want an error", src)
		}
	}
	if err := l.Scan(nil); err != nil || l == nil || len(l) != 0 {
		t.Errorf("Scan(NULL) = %q, %v; want an empty list", l, err)
	}
	if err := l.Scan([]byte(`["a"]`)); err != nil || !slices.Equal(l, sqldb.StringList{"a"}) {
		t.Errorf("Scan([]byte) = %q, %v", l, err)
	}
}
