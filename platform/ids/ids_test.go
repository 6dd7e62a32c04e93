package ids_test

import (
	"testing"

	"github.com/google/uuid"

	"github.com/sluicehq/sluice/platform/ids"
)

func TestNewIsAVersion7UUIDThatSortsByCreation(t *testing.T) {
	t.Parallel()
	prev := ""
	seen := map[string]bool{}
	for range 1000 {
		id := ids.New()
		u, err := uuid.Parse(id)
		if err != nil {
			t.Fatalf("New() = %q: %v", id, err)
		}
		if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
			t.Fatalf("New() = %q: version %d, variant %s; want 7, RFC 4122", id, u.Version(), u.Variant())
		}
		if u.String() != id {
			t.Fatalf("New() = %q, not in canonical form %q", id, u.String())
		}
		if seen[id] {
			t.Fatalf("New() returned %q twice", id)
		}
		seen[id] = true
		// google/uuid keeps v7 ids made in one process increasing, even
		// within one millisecond.
		if id <= prev {
			t.Fatalf("New() = %q after %q; want later ids to sort later", id, prev)
		}
		prev = id
	}
}
