-- Secrets (SecretService). repository_id is '' for a platform-wide secret.
-- ciphertext: base64 of the age-encrypted value (bound to repository_id and
-- name); key_id names the key that encrypted it, so source re-encrypts
-- what an older key encrypted after a rotation. No value is kept in plain
-- text anywhere.
CREATE TABLE secrets (
    repository_id TEXT NOT NULL,
    name TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (repository_id, name)
);
