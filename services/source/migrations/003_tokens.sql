-- API tokens (AccessService). Only the secret's SHA-256 is kept (hash);
-- role: viewer, operator or admin; repositories: a JSON list, '[]' for all.
-- expires_at and revoked_at are 0 when unset. Active tokens are published
-- to the sluice-tokens key-value bucket, where every service reads them.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    repositories TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL DEFAULT 0,
    revoked_at BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX tokens_created ON tokens (created_at, id);
