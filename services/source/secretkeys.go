package source

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/sluicehq/sluice/platform/apierror"
)

// maxSecretKeyFile bounds the key file read at start.
const maxSecretKeyFile = 1 << 20

// secretKeys is the key ring secrets are encrypted with: age identities
// (docs/security.md), the first of which encrypts; all of them decrypt, so
// an operator rotates by putting a new key first and restarting source,
// which re-encrypts every secret with it (reencryptSecrets).
type secretKeys struct {
	identities []age.Identity
	primary    age.Recipient
	// primaryID names the primary key in the secrets table: a hash of its
	// public key, which says nothing of the secret key.
	primaryID string
}

// loadSecretKeys reads the key ring from text (the secret-key setting) or,
// when that is empty, from file. It returns nil when neither is set: source
// then refuses to store or hand out secrets, saying how to give it a key.
func loadSecretKeys(file, text string) (*secretKeys, error) {
	origin := "secret-key"
	if text == "" {
		if file == "" {
			return nil, nil
		}
		origin = "secret-key-file " + file
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("secret-key-file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxSecretKeyFile+1))
		if err != nil {
			return nil, fmt.Errorf("secret-key-file: %w", err)
		}
		if len(b) > maxSecretKeyFile {
			return nil, fmt.Errorf("secret-key-file %s is larger than %d bytes", file, maxSecretKeyFile)
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
	return &secretKeys{identities: ids, primary: recipient, primaryID: "age-" + hex.EncodeToString(sum[:8])}, nil
}

// GenerateSecretKey makes a new age hybrid (post-quantum) secret key, as
// one line of a key file.
func GenerateSecretKey() (string, error) {
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return "", fmt.Errorf("generate secret key: %w", err)
	}
	return id.String(), nil
}

// EnsureSecretKeyFile makes path (0600) with a new key unless it exists;
// created says whether it did. `sluice up` keeps its key in its data
// directory this way.
func EnsureSecretKeyFile(path string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("secret key file: %w", err)
	}
	key, err := GenerateSecretKey()
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

// sealedSecret is what is encrypted: the value bound to where it belongs,
// so a ciphertext copied to another row of the table does not decrypt as
// that row's secret.
type sealedSecret struct {
	Repository string `json:"repository"`
	Name       string `json:"name"`
	Value      string `json:"value"`
}

// seal encrypts value for the secret name of repositoryID ("" for the
// platform) with the primary key.
func (k *secretKeys) seal(repositoryID, name, value string) ([]byte, error) {
	plain, err := json.Marshal(sealedSecret{Repository: repositoryID, Name: name, Value: value})
	if err != nil {
		return nil, fmt.Errorf("encrypt secret %s: %w", name, err)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, k.primary)
	if err != nil {
		return nil, fmt.Errorf("encrypt secret %s: %w", name, err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypt secret %s: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt secret %s: %w", name, err)
	}
	return out.Bytes(), nil
}

// open decrypts a sealed value and checks it belongs where it was found.
func (k *secretKeys) open(repositoryID, name string, ciphertext []byte) (string, error) {
	r, err := age.Decrypt(bytes.NewReader(ciphertext), k.identities...)
	if err != nil {
		return "", fmt.Errorf("secret %s cannot be decrypted with source's key ring (the key it was stored with is missing; an operator must restore it or set the secret again): %w: %w", name, apierror.ErrFailedPrecondition, err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return "", fmt.Errorf("decrypt secret %s: %w", name, err)
	}
	var s sealedSecret
	if err := json.Unmarshal(plain, &s); err != nil {
		return "", fmt.Errorf("decrypt secret %s: not a sealed secret: %w", name, apierror.ErrFailedPrecondition)
	}
	if s.Repository != repositoryID || s.Name != name {
		return "", fmt.Errorf("decrypt secret %s: the stored value belongs to another secret (was the table altered?): %w", name, apierror.ErrFailedPrecondition)
	}
	return s.Value, nil
}
