package domain

import (
	"time"

	"github.com/sluicehq/sluice/platform/forge"
)

// ForgeRelease is a release on its way to a forge: its git tag and the
// forge's release, made once.
type ForgeRelease struct {
	ReleaseID string
	// RepositoryID and Repository are the repository's id and name; RunID
	// the run released (the forge token is asked for by it).
	RepositoryID, Repository, RunID string
	Forge                           forge.Repo
	Version                         string
	Release                         forge.Release
	// Delivery is Pending, Succeeded (made on the forge) or Dead (given
	// up).
	Delivery      Status
	AttemptCount  int
	LastError     string
	CreatedAt     time.Time
	NextAttemptAt time.Time
	// LeasedUntil is the lease a worker took it with: only that worker's
	// outcome is recorded.
	LeasedUntil time.Time
}
