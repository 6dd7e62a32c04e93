package domain

import "time"

// MaxSecretsPerScope bounds how many secrets one repository (or the
// platform) may have.
const MaxSecretsPerScope = 1000

// Secret is a stored secret without its value, which only the key ring
// can read (platform/keyring).
type Secret struct {
	// RepositoryID is "" for a platform-wide secret; Repository is the
	// repository's name.
	RepositoryID string
	Repository   string
	Name         string
	// Ciphertext is the encrypted value and KeyID the key that encrypted it.
	Ciphertext []byte
	KeyID      string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	UpdatedBy  string
}
