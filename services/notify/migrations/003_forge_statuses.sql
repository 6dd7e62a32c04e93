-- The commit statuses notify sets on the forges (source's
-- CommitStatusChanged): the latest of each repository, commit and context
-- only (sequence orders them; an older one never replaces a newer one). A
-- pending one is due at next_attempt_at; a worker that takes it leases it
-- until leased_until, and a newer one that comes meanwhile waits for the
-- lease to end, so two of one context are never sent at once, and a late
-- one never lands after a newer one.
CREATE TABLE forge_statuses (
    repository_id TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    context TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    repository TEXT NOT NULL,
    run_id TEXT NOT NULL,
    forge_kind TEXT NOT NULL,
    forge_url TEXT NOT NULL,
    forge_project TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    leased_until BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, commit_sha, context)
);
CREATE INDEX forge_statuses_due ON forge_statuses (status, next_attempt_at);
