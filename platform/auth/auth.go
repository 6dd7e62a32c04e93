// Package auth is who may call Sluice and what they may do: the identities
// behind API credentials, the policy every procedure carries in its proto
// (sluice.auth.v1.policy), the Connect interceptor that enforces it, and
// the credentials every service learns from NATS so that no request needs
// a call to another service.
//
// Two kinds of identity call Sluice. People and CI jobs use tokens that
// source issues (AccessService); source publishes each token's hash, role
// and repositories in the JetStream key-value bucket TokensBucket, and
// deletes it there when the token is revoked. Sluice services use their own
// identity: each process makes a random secret at start and publishes its
// hash under its service's name in ServicesBucket, where NATS lets only
// that service's user write (deploy/nats). Every service watches both
// buckets (Verifier), so a new or revoked token is known everywhere within
// moments.
//
// Secrets are 256 random bits, so a SHA-256 of them is safe to store and
// publish: nothing but the secret hashes to it, and no password-style
// stretching is needed.
package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/platform/apierror"
	authv1 "github.com/sluicehq/sluice/proto/gen/sluice/auth/v1"
)

// Kind is what an identity is.
type Kind string

// The kinds of identity.
const (
	KindUser    Kind = "user"
	KindService Kind = "service"
)

// Identity is who made a request.
type Identity struct {
	Kind Kind
	// Name is the token's name for a user, the service's name for a service.
	Name string
	// TokenID is the user token's id.
	TokenID string
	// Role is a user's role.
	Role authv1.Role
	// Repositories limit a user's token; empty: every repository.
	Repositories []string
	// ExpiresAt is when a user's token stops working; zero: never.
	ExpiresAt time.Time
}

// String names the identity for messages and the audit log: "token
// abc123 (ci)" or "service release". It never includes a secret.
func (i Identity) String() string {
	if i.Kind == KindService {
		return "service " + i.Name
	}
	return fmt.Sprintf("token %s (%s)", i.TokenID, i.Name)
}

// Limited reports whether the identity is limited to some repositories.
func (i Identity) Limited() bool { return i.Kind == KindUser && len(i.Repositories) > 0 }

// AllowsRepository reports whether the identity may act on repository.
// Services act for the whole platform.
func (i Identity) AllowsRepository(repository string) bool {
	return !i.Limited() || slices.Contains(i.Repositories, repository)
}

// RoleName is the role's name as users write it: viewer, operator, admin.
func RoleName(r authv1.Role) string {
	switch r {
	case authv1.Role_ROLE_VIEWER:
		return "viewer"
	case authv1.Role_ROLE_OPERATOR:
		return "operator"
	case authv1.Role_ROLE_ADMIN:
		return "admin"
	default:
		return "none"
	}
}

// ParseRole is RoleName's inverse.
func ParseRole(name string) (authv1.Role, error) {
	for _, r := range []authv1.Role{authv1.Role_ROLE_VIEWER, authv1.Role_ROLE_OPERATOR, authv1.Role_ROLE_ADMIN} {
		if strings.EqualFold(name, RoleName(r)) {
			return r, nil
		}
	}
	return authv1.Role_ROLE_UNSPECIFIED, fmt.Errorf("role %q: must be viewer, operator or admin", name)
}

type identityKey struct{}

// WithIdentity returns ctx carrying id (the interceptor does this for
// every request).
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext is the identity of the request ctx belongs to.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

type observerKey struct{}

type observer struct {
	id Identity
	ok bool
}

// ObserveIdentity returns ctx on which the Guard notes the identity it
// authenticates, and a function that returns it after the call, also
// when the Guard then refused the call (the audit log records who was
// refused). It is false when the call had no valid credential.
func ObserveIdentity(ctx context.Context) (context.Context, func() (Identity, bool)) {
	o := &observer{}
	return context.WithValue(ctx, observerKey{}, o), func() (Identity, bool) { return o.id, o.ok }
}

// CheckRepository refuses a request whose identity may not act on
// repository; handlers call it for what they found by id (a run, a build).
// A context without an identity is refused: handlers run only behind the
// interceptor.
func CheckRepository(ctx context.Context, repository string) error {
	id, ok := FromContext(ctx)
	if !ok {
		return fmt.Errorf("no identity on the request: %w", apierror.ErrUnauthenticated)
	}
	if !id.AllowsRepository(repository) {
		return fmt.Errorf("%s is limited to %s, not %q: %w", id, strings.Join(id.Repositories, ", "), repository, apierror.ErrPermissionDenied)
	}
	return nil
}

// Repositories returns the repositories the request's identity is limited
// to, and false when it may see every repository; list handlers use it to
// filter.
func Repositories(ctx context.Context) ([]string, bool) {
	id, ok := FromContext(ctx)
	if !ok {
		return []string{}, true // no identity: limited to nothing, so lists show nothing
	}
	return id.Repositories, id.Limited()
}
