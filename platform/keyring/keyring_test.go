package keyring_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/keyring"
	"github.com/sluicehq/sluice/platform/sqldb"
	"github.com/sluicehq/sluice/platform/sqldb/sqldbtest"
)

func ring(t *testing.T, keys ...string) *keyring.Ring {
	t.Helper()
	r, err := keyring.Load(keyring.Settings{Text: strings.Join(keys, "\n")})
	if err != nil || r == nil {
		t.Fatalf("Load: %v", err)
	}
	return r
}

func newKey(t *testing.T) string {
	t.Helper()
	k, err := keyring.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenBindsTheValue(t *testing.T) {
	t.Parallel()
	r := ring(t, newKey(t))
	sealed, err := r.Seal("hunter2-canary", "repo-1", "TOKEN")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), "hunter2-canary") {
		t.Fatal("the ciphertext holds the value")
	}
	if v, err := r.Open(sealed, "repo-1", "TOKEN"); err != nil || v != "hunter2-canary" {
		t.Fatalf("Open = %q, %v", v, err)
	}
	for _, binding := range [][]string{{"repo-2", "TOKEN"}, {"repo-1", "OTHER"}, {"repo-1"}, {"repo-1", "TOKEN", "x"}} {
		if _, err := r.Open(sealed, binding...); !errors.Is(err, apierror.ErrFailedPrecondition) {
			t.Errorf("Open with binding %v = %v, want failed precondition", binding, err)
		}
	}
	if _, err := ring(t, newKey(t)).Open(sealed, "repo-1", "TOKEN"); !errors.Is(err, apierror.ErrFailedPrecondition) {
		t.Errorf("Open with a foreign key = %v, want failed precondition", err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := newKey(t), newKey(t)
	old := ring(t, oldKey)
	text, err := old.SealText("signing-secret", "webhook", "r1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text, "age:"+old.KeyID()+":") || !old.Current(text) {
		t.Fatalf("SealText = %q", text)
	}
	both := ring(t, newKey, oldKey)
	if both.Current(text) {
		t.Fatal("a value sealed with the old key is current under the new first key")
	}
	renewed, err := both.RenewText(text, "webhook", "r1")
	if err != nil || !both.Current(renewed) {
		t.Fatalf("RenewText = %q, %v", renewed, err)
	}
	if v, err := ring(t, newKey).OpenText(renewed, "webhook", "r1"); err != nil || v != "signing-secret" {
		t.Fatalf("after rotation: %q, %v", v, err)
	}
}

func TestTextKeptAsGiven(t *testing.T) {
	t.Parallel()
	var none *keyring.Ring
	if v, err := none.SealText("plain", "b"); err != nil || v != "plain" {
		t.Fatalf("nil ring SealText = %q, %v", v, err)
	}
	if v, err := none.OpenText("plain", "b"); err != nil || v != "plain" {
		t.Fatalf("nil ring OpenText = %q, %v", v, err)
	}
	sealed, err := ring(t, newKey(t)).SealText("v", "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := none.OpenText(sealed, "b"); !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("nil ring opening a sealed value = %v, want ErrNoKey", err)
	}
	// A value kept before there was a key opens as it is.
	if v, err := ring(t, newKey(t)).OpenText("legacy", "b"); err != nil || v != "legacy" {
		t.Fatalf("OpenText(legacy) = %q, %v", v, err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	if r, err := keyring.Load(keyring.Settings{}); r != nil || err != nil {
		t.Fatalf("Load with nothing = %v, %v; want no ring", r, err)
	}
	const bad = "AGE-SECRET-KEY-1NOTAKEYATALLBUTLONGENOUGHTOLOOKLIKEONE"
	_, err := keyring.Load(keyring.Settings{Text: bad})
	if err == nil || strings.Contains(err.Error(), "NOTAKEY") {
		t.Fatalf("Load(bad) = %v; want an error that does not quote the key", err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "keys", "secret-key")
	created, err := keyring.EnsureFile(file)
	if err != nil || !created {
		t.Fatalf("EnsureFile = %v, %v", created, err)
	}
	info, err := os.Stat(file)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", info.Mode(), err)
	}
	first, _ := os.ReadFile(file)
	if created, err := keyring.EnsureFile(file); err != nil || created {
		t.Fatalf("EnsureFile again = %v, %v; want the file kept", created, err)
	}
	again, _ := os.ReadFile(file)
	if string(first) != string(again) {
		t.Fatal("EnsureFile replaced an existing key")
	}
	fromFile, err := keyring.Load(keyring.Settings{File: file})
	if err != nil {
		t.Fatal(err)
	}
	// Text wins over the file.
	both, err := keyring.Load(keyring.Settings{File: file, Text: newKey(t)})
	if err != nil || both.KeyID() == fromFile.KeyID() {
		t.Fatalf("Load(file and text) took the file: %v", err)
	}
}

func TestRenewColumn(t *testing.T) {
	t.Parallel()
	sqldbtest.Each(t, func(t *testing.T, store string) {
		db, err := sqldb.Open(context.Background(), sqldbtest.URLFor(t, store))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if _, err := db.ExecContext(context.Background(), `CREATE TABLE hooks (id TEXT PRIMARY KEY, secret TEXT NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		oldKey, newKey := newKey(t), newKey(t)
		underOld, err := ring(t, oldKey).SealText("old-secret", "hook", "b")
		if err != nil {
			t.Fatal(err)
		}
		for id, v := range map[string]string{"a": "plain-secret", "b": underOld} {
			if _, err := db.ExecContext(context.Background(), `INSERT INTO hooks (id, secret) VALUES ($1, $2)`, id, v); err != nil {
				t.Fatal(err)
			}
		}
		r := ring(t, newKey, oldKey)
		col := keyring.Column{Table: "hooks", ID: "id", Value: "secret", Binding: "hook", What: "hook secrets"}
		r.RenewColumn(context.Background(), db, col, slog.New(slog.NewTextHandler(io.Discard, nil)))
		want := map[string]string{"a": "plain-secret", "b": "old-secret"}
		for id, v := range want {
			var stored string
			if err := db.QueryRowContext(context.Background(), `SELECT secret FROM hooks WHERE id = $1`, id).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if !r.Current(stored) || strings.Contains(stored, v) {
				t.Errorf("%s is stored as %q; want sealed with the first key", id, stored)
			}
			if got, err := ring(t, newKey).OpenText(stored, "hook", id); err != nil || got != v {
				t.Errorf("%s opens as %q, %v; want %q", id, got, err, v)
			}
		}
	})
}
