package notify

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/platform/auth"
)

// Scope is what a caller may see: every repository, or those of a token
// limited to repositories. Subscriptions, deliveries and watched events
// belong to the repository of their events; a limited caller sees none of
// what belongs to no repository.
type Scope struct {
	Limited      bool
	Repositories []string
}

// ScopeOf is the scope of the request's identity.
func ScopeOf(ctx context.Context) Scope {
	repos, limited := auth.Repositories(ctx)
	return Scope{Limited: limited, Repositories: repos}
}

// Allows reports whether the scope covers repository ("" for none).
func (s Scope) Allows(repository string) bool {
	return !s.Limited || (repository != "" && slices.Contains(s.Repositories, repository))
}

// where appends to a query's conditions and arguments what keeps column
// (a repository name) within the scope.
func (s Scope) where(column string, where []string, args []any) ([]string, []any) {
	if !s.Limited {
		return where, args
	}
	if len(s.Repositories) == 0 {
		return append(where, "1 = 0"), args
	}
	marks := make([]string, len(s.Repositories))
	for i, r := range s.Repositories {
		args = append(args, r)
		marks[i] = "$" + strconv.Itoa(len(args))
	}
	return append(where, column+" IN ("+strings.Join(marks, ", ")+")"), args
}
