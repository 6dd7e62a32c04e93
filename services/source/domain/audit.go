package domain

import "time"

// AuditEntry is one entry of the audit log: who called a procedure that
// changes state, on what, and how it ended (platform/audit). It holds no
// credential and no secret's value.
type AuditEntry struct {
	ID        string
	Time      time.Time
	Service   string
	Procedure string
	// Action is the procedure's audit action (run.trigger, ...).
	Action string
	// ActorKind is user, service or anonymous; ActorID a token's id,
	// ActorName a token's or a service's name, ActorRole a token's role.
	ActorKind, ActorID, ActorName, ActorRole string
	// Repository is the repository's name, "" for none.
	Repository string
	Target     string
	// Outcome is ok or the Connect code the call ended with.
	Outcome   string
	RequestID string
}

// AuditFilter says which entries a list keeps; a zero field keeps all.
type AuditFilter struct {
	// Repository keeps one repository's entries.
	Repository string
	// Only keeps the entries of these repositories (a limited token);
	// nil keeps every repository's and the entries of none.
	Only []string
	// Actor matches a token id, a token name or a service name.
	Actor string
	// Action matches an action, or every action under a prefix that ends
	// in a dot (secret.).
	Action string
	// Since (included) and Until (excluded) bound the entries' time.
	Since, Until time.Time
}
