package domain

import (
	"time"
)

// Token is an API token as source keeps it: never its secret, only the
// secret's hash.
type Token struct {
	ID   string
	Name string
	// Role is viewer, operator or admin.
	Role string
	// Repositories limit the token; empty: every repository.
	Repositories []string
	Hash         string
	CreatedAt    time.Time
	// CreatedBy names the identity that made it.
	CreatedBy string
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time
	// RevokedAt is zero until the token is revoked.
	RevokedAt time.Time
}

// Active reports whether the token works at now.
func (t Token) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}
