package domain

import (
	"time"

	"github.com/sluicehq/sluice/platform/forge"
)

// ForgeStatus is a commit status on its way to a forge: the latest of its
// repository, commit and context (Key).
type ForgeStatus struct {
	RepositoryID, Commit, Context string
	// Sequence orders the statuses of one key: a higher one is newer.
	Sequence uint64
	// Repository is the repository's name; RunID the run that set it.
	Repository, RunID string
	Forge             forge.Repo
	Status            forge.Status
	// Delivery is Pending, Succeeded (set on the forge) or Dead (given up).
	Delivery      Status
	AttemptCount  int
	LastError     string
	CreatedAt     time.Time
	NextAttemptAt time.Time
	// LeasedUntil is the lease a worker took it with (ClaimForgeStatuses):
	// only that worker's outcome is recorded.
	LeasedUntil time.Time
}
