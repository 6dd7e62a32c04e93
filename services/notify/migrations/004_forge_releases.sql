-- The releases notify makes on the forges (source's ForgeReleaseRequested):
-- one row per release, made once. A pending one is due at next_attempt_at;
-- a worker that takes it leases it until leased_until, so one release is
-- never made by two workers at once.
CREATE TABLE forge_releases (
    release_id TEXT PRIMARY KEY,
    repository_id TEXT NOT NULL,
    repository TEXT NOT NULL,
    run_id TEXT NOT NULL,
    forge_kind TEXT NOT NULL,
    forge_url TEXT NOT NULL,
    forge_project TEXT NOT NULL,
    tag TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    version TEXT NOT NULL,
    changelog TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    leased_until BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL
);
CREATE INDEX forge_releases_due ON forge_releases (status, next_attempt_at);
