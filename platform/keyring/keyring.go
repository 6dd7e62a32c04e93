// Package keyring is how a Sluice service keeps a secret at rest: values
// are encrypted with age (filippo.io/age) to the first of the operator's
// keys, bound to what they belong to, and decrypted with any key of the
// ring, so an operator rotates keys by putting a new one first and
// restarting (the service re-encrypts what an older key encrypted). Source
// keeps the secrets steps ask for and the repositories' webhook secrets
// with it, notify its subscriptions' signing secrets (docs/security.md).
package keyring

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/sluicehq/sluice/platform/apierror"
	"github.com/sluicehq/sluice/platform/servicekit"
	"github.com/sluicehq/sluice/platform/sqldb"
)

// maxKeyFile bounds the key file read at start.
const maxKeyFile = 1 << 20

// maxSealed bounds what Open decrypts.
const maxSealed = 1 << 20

// Settings say where a service finds its keys.
type Settings struct {
	// File holds age secret keys, one per line, the first encrypting.
	File string
	// Text is the same given directly, best through the variable
	// ($SLUICE_<SERVICE>_SECRET_KEY); it wins over File.
	Text string
}

// RegisterFlags registers secret-key-file and secret-key.
func (s *Settings) RegisterFlags(f *servicekit.Flags) {
	f.StringVar(&s.File, "secret-key-file", "file with the age keys secrets are encrypted with at rest, one per line, the first encrypting")
	f.StringVar(&s.Text, "secret-key", "the age keys themselves (set the variable rather than the flag, which ps shows); wins over secret-key-file")
}

// Set reports whether a key is configured.
func (s Settings) Set() bool { return s.File != "" || s.Text != "" }

// Ring is a service's keys.
type Ring struct {
	identities []age.Identity
	primary    age.Recipient
	id         string
}

// Load reads the ring the settings name. It returns nil, nil when neither
// is set: the service then keeps no secrets of that kind and says how to
// give it a key.
func Load(s Settings) (*Ring, error) {
	origin, text := "secret-key", s.Text
	if text == "" {
		if s.File == "" {
			return nil, nil
		}
		origin = "secret-key-file " + s.File
		f, err := os.Open(s.File)
		if err != nil {
			return nil, fmt.Errorf("secret-key-file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
		if err != nil {
			return nil, fmt.Errorf("secret-key-file: %w", err)
		}
		if len(b) > maxKeyFile {
			return nil, fmt.Errorf("secret-key-file %s is larger than %d bytes", s.File, maxKeyFile)
		}
		text = string(b)
	}
	ids, err := age.ParseIdentities(strings.NewReader(text))
	if err != nil {
		// age's errors do not quote key material.
		return nil, fmt.Errorf("%s: %w (one age secret key per line, as age-keygen or `sluice secret keygen` print them; the first encrypts)", origin, err)
	}
	var recipient age.Recipient
	var public string
	switch first := ids[0].(type) {
	case *age.HybridIdentity:
		recipient, public = first.Recipient(), first.Recipient().String()
	case *age.X25519Identity:
		recipient, public = first.Recipient(), first.Recipient().String()
	default:
		return nil, fmt.Errorf("%s: the first key must be an age X25519 or hybrid (post-quantum) secret key", origin)
	}
	sum := sha256.Sum256([]byte(public))
	return &Ring{identities: ids, primary: recipient, id: "age-" + hex.EncodeToString(sum[:8])}, nil
}

// KeyID names the key Seal encrypts with: a hash of its public key, which
// says nothing of the secret key. A service stores it beside what it
// sealed, to find what an older key sealed.
func (r *Ring) KeyID() string { return r.id }

// Generate makes a new age hybrid (post-quantum) secret key, as one line
// of a key file.
func Generate() (string, error) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return "", fmt.Errorf("generate secret key: %w", err)
	}
	return id.String(), nil
}

// EnsureFile makes path (0600) with a new key unless it exists; created
// says whether it did. `sluice up` keeps its key in its data directory.
func EnsureFile(path string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("secret key file: %w", err)
	}
	key, err := Generate()
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("secret key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("secret key file: %w", err)
	}
	_, werr := fmt.Fprintf(f, "# Sluice's secret key (age). Keep it safe: without it the stored secrets cannot be read.\n%s\n", key)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return false, fmt.Errorf("secret key file: %w", werr)
	}
	return true, nil
}

// sealed is what is encrypted: the value bound to where it belongs, so a
// ciphertext copied to another row does not open as that row's secret.
type sealed struct {
	Binding []string `json:"binding"`
	Value   string   `json:"value"`
}

// Seal encrypts value with the first key, bound to binding (say, a
// repository id and a secret's name); Open must be given the same binding.
func (r *Ring) Seal(value string, binding ...string) ([]byte, error) {
	plain, err := json.Marshal(sealed{Binding: binding, Value: value})
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, r.primary)
	if err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return out.Bytes(), nil
}

// Open decrypts what Seal made with binding. Every error is
// apierror.ErrFailedPrecondition: an operator must mend the ring or the
// value must be set again; no retry helps.
func (r *Ring) Open(ciphertext []byte, binding ...string) (string, error) {
	rd, err := age.Decrypt(bytes.NewReader(ciphertext), r.identities...)
	if err != nil {
		return "", fmt.Errorf("cannot be decrypted with the key ring (the key it was stored with is missing; an operator must restore it or the value must be set again): %w: %w", apierror.ErrFailedPrecondition, err)
	}
	plain, err := io.ReadAll(io.LimitReader(rd, maxSealed))
	if err != nil {
		return "", fmt.Errorf("decrypt: %w: %w", apierror.ErrFailedPrecondition, err)
	}
	var s sealed
	if err := json.Unmarshal(plain, &s); err != nil {
		return "", fmt.Errorf("decrypt: not a sealed value: %w", apierror.ErrFailedPrecondition)
	}
	if !slices.Equal(s.Binding, binding) {
		return "", fmt.Errorf("decrypt: the stored value belongs to something else (was the table altered?): %w", apierror.ErrFailedPrecondition)
	}
	return s.Value, nil
}

// textPrefix starts the text form of a sealed value: "age:<key id>:<base64
// ciphertext>", for a column that held the value itself before there was
// a key (a webhook's or a subscription's HMAC key, which must be read back).
const textPrefix = "age:"

// ErrNoKey is the error of opening a sealed value without a key ring.
var ErrNoKey = errors.New("the value is encrypted and the service has no secret key (secret-key-file or $SLUICE_<SERVICE>_SECRET_KEY)")

// SealText is the text form of value sealed with binding. A nil ring
// keeps the value as it is: the service was given no key.
func (r *Ring) SealText(value string, binding ...string) (string, error) {
	if r == nil {
		return value, nil
	}
	ciphertext, err := r.Seal(value, binding...)
	if err != nil {
		return "", err
	}
	return textPrefix + r.id + ":" + base64.StdEncoding.EncodeToString(ciphertext), nil
}

// OpenText reads what SealText made, or a value kept as it is.
func (r *Ring) OpenText(stored string, binding ...string) (string, error) {
	rest, sealed := strings.CutPrefix(stored, textPrefix)
	if !sealed {
		return stored, nil
	}
	if r == nil {
		return "", fmt.Errorf("%w: %w", ErrNoKey, apierror.ErrFailedPrecondition)
	}
	_, encoded, ok := strings.Cut(rest, ":")
	ciphertext, err := base64.StdEncoding.DecodeString(encoded)
	if !ok || err != nil {
		return "", fmt.Errorf("the stored value is damaged: %w", apierror.ErrFailedPrecondition)
	}
	return r.Open(ciphertext, binding...)
}

// Current reports whether stored is sealed with the ring's first key (a
// nil ring: whether it is kept as it is). What is not current, a service
// seals again at start (RenewText).
func (r *Ring) Current(stored string) bool {
	if r == nil {
		return !strings.HasPrefix(stored, textPrefix)
	}
	return strings.HasPrefix(stored, textPrefix+r.id+":")
}

// RenewText is stored sealed with the first key: for a value kept as it is
// or sealed with an older key.
func (r *Ring) RenewText(stored string, binding ...string) (string, error) {
	value, err := r.OpenText(stored, binding...)
	if err != nil {
		return "", err
	}
	return r.SealText(value, binding...)
}

// Column is a table column that holds values in text form (SealText),
// keyed by an id column; Binding and the id bind each value.
type Column struct {
	Table, ID, Value string
	// Binding names what the values are (the first binding, before the id).
	Binding string
	// What says what the values are in log lines ("webhook secrets").
	What string
}

// RenewColumn seals with the first key, once at start, every value of the
// column kept as given or sealed with an older key, unless it changed
// meanwhile (set again, maybe by another replica). Failures are logged:
// the values stay readable as they are, and the service keeps running. A
// nil ring changes nothing, but says at start when values are sealed that
// it cannot read (the service lost its key setting).
func (r *Ring) RenewColumn(ctx context.Context, db *sqldb.DB, c Column, log *slog.Logger) {
	stored, err := readColumn(ctx, db, c)
	if err != nil {
		log.ErrorContext(ctx, "cannot read the values to encrypt", slog.String("what", c.What), slog.Any("error", err))
		return
	}
	if r == nil {
		sealed := 0
		for _, v := range stored {
			if strings.HasPrefix(v, textPrefix) {
				sealed++
			}
		}
		if sealed > 0 {
			log.ErrorContext(ctx, c.What+" are encrypted and the service has no secret key: they cannot be used until it has its key again", slog.Int("values", sealed))
		}
		return
	}
	done, failed := 0, 0
	for id, old := range stored {
		if r.Current(old) {
			continue
		}
		renewed, err := r.RenewText(old, c.Binding, id)
		var n int64
		if err == nil {
			var res sql.Result
			// The names are the service's own constants, never input.
			res, err = db.ExecContext(ctx, `UPDATE `+c.Table+` SET `+c.Value+` = $1 WHERE `+c.ID+` = $2 AND `+c.Value+` = $3`, renewed, id, old)
			if err == nil {
				n, err = res.RowsAffected()
			}
		}
		switch {
		case err != nil:
			failed++
			log.ErrorContext(ctx, "cannot encrypt a value", slog.String("what", c.What), slog.String("id", id), slog.Any("error", err))
		case n == 1:
			done++
		}
	}
	if done+failed > 0 {
		log.InfoContext(ctx, c.What+" encrypted with the first key", slog.Int("values", done), slog.Int("failed", failed), slog.String("key", r.id))
	}
}

func readColumn(ctx context.Context, db *sqldb.DB, c Column) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+c.ID+`, `+c.Value+` FROM `+c.Table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, stored string
		if err := rows.Scan(&id, &stored); err != nil {
			return nil, err
		}
		out[id] = stored
	}
	return out, rows.Err()
}
