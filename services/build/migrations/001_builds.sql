-- One build per run. A worker holds a RUNNING build while lease_expires_at
-- (unix nanos) is in the future; it renews the lease while it works.
CREATE TABLE builds (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    repository_id TEXT NOT NULL,
    repository_name TEXT NOT NULL,
    repository_url TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    lease_expires_at BIGINT NOT NULL,
    failure_reason TEXT NOT NULL,
    failed_step TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    -- JSON array of strings.
    last_log_lines TEXT NOT NULL,
    step_duration BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL
);
CREATE INDEX builds_created ON builds (created_at, id);

-- The steps of a build's current attempt, in pipeline order.
CREATE TABLE build_steps (
    build_id TEXT NOT NULL REFERENCES builds (id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    PRIMARY KEY (build_id, idx)
);

-- Artifacts the build's current attempt stored in the object store.
CREATE TABLE artifacts (
    build_id TEXT NOT NULL REFERENCES builds (id),
    name TEXT NOT NULL,
    object_name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (build_id, name)
);
