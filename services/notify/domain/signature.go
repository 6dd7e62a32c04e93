package domain

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Sign returns the signature of a delivery's body under the subscription's
// secret, as sent in X-Sluice-Signature-256: "sha256=" and the hex
// HMAC-SHA256 of the body keyed by the secret.
func Sign(body []byte, secret string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether signature is body's signature under secret, in
// constant time. Subscribers written in Go can use it.
func Verify(body []byte, secret, signature string) bool {
	return hmac.Equal([]byte(Sign(body, secret)), []byte(signature))
}
