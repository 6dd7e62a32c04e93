-- The audit log: one row per call of a procedure that changes state, in
-- any service, allowed or refused (sluice.audit.v1.AuditEntry, from the
-- AUDIT stream). time is Unix nanoseconds; repository is the repository's
-- name, '' for none; outcome is 'ok' or a Connect code. Rows older than
-- the audit retention are pruned.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    time BIGINT NOT NULL,
    service TEXT NOT NULL,
    procedure TEXT NOT NULL,
    action TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    repository TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    request_id TEXT NOT NULL
);

CREATE INDEX audit_log_time ON audit_log (time, id);
CREATE INDEX audit_log_repository ON audit_log (repository, time, id);
