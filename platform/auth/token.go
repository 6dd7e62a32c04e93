package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// Token secrets look like sluice_<id>_<random> for users and
// sluicesvc_<service>_<random> for services: the prefix makes them easy to
// find with a secret scanner, and the id lets messages name a token without
// showing its secret.
const (
	userPrefix    = "sluice_"
	servicePrefix = "sluicesvc_"
	// MaxSecretLen bounds a presented secret before anything hashes it.
	MaxSecretLen = 200
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewUserToken makes a user token: its id and its secret.
func NewUserToken() (id, secret string) {
	idBytes := make([]byte, 10)
	_, _ = rand.Read(idBytes) // crypto/rand.Read never fails (Go 1.24+)
	id = idEncoding.EncodeToString(idBytes)
	return id, userPrefix + id + "_" + randomPart()
}

// NewServiceSecret makes a service's secret for this process.
func NewServiceSecret(service string) string {
	return servicePrefix + service + "_" + randomPart()
}

func randomPart() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Hash is what Sluice stores and publishes of a secret: hex SHA-256.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenID is the id part of a user token's secret, for messages; "" when
// secret is not shaped like one.
func TokenID(secret string) string {
	rest, ok := strings.CutPrefix(secret, userPrefix)
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 {
		return ""
	}
	return id
}

// CheckSecret refuses a string that is not shaped like a Sluice secret
// (what `sluice login` and bootstrap files take).
func CheckSecret(secret string) error {
	switch {
	case len(secret) > MaxSecretLen:
		return fmt.Errorf("a token is at most %d characters", MaxSecretLen)
	case strings.HasPrefix(secret, userPrefix) && TokenID(secret) != "":
		return nil
	case strings.HasPrefix(secret, servicePrefix):
		return nil
	default:
		return fmt.Errorf("not a Sluice token: tokens start with %q", userPrefix)
	}
}
