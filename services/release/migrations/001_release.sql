-- Releases: one version of a repository. The repository is named as source
-- names it (RepositoryRef.name); id and url are kept to check out and to
-- fill events.
CREATE TABLE releases (
    id TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    repository_id TEXT NOT NULL,
    repository_url TEXT NOT NULL,
    version TEXT NOT NULL,
    major BIGINT NOT NULL,
    minor BIGINT NOT NULL,
    patch BIGINT NOT NULL,
    commit_sha TEXT NOT NULL,
    run_id TEXT NOT NULL,
    changelog TEXT NOT NULL,
    -- JSON: the pipeline's environments at this commit (how to deploy it).
    environments TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (repository, version)
);
CREATE INDEX releases_commit ON releases (repository, commit_sha);
CREATE INDEX releases_semver ON releases (repository, major, minor, patch);

CREATE TABLE release_artifacts (
    release_id TEXT NOT NULL REFERENCES releases (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    object TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (release_id, name)
);

-- The release stage of each run, keyed by run id: a redelivered or
-- duplicated TestRunFinished finds its run here and does not start over.
CREATE TABLE release_runs (
    run_id TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    release_id TEXT NOT NULL,
    -- RELEASING or FINISHED.
    state TEXT NOT NULL,
    -- SUCCEEDED, FAILED or SKIPPED once finished.
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Deployments: written before the deploy command runs, so a deploy happens
-- at most once per run, environment and kind (deploy or rollback).
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    release_id TEXT NOT NULL REFERENCES releases (id),
    repository TEXT NOT NULL,
    environment TEXT NOT NULL,
    version TEXT NOT NULL,
    run_id TEXT NOT NULL,
    rollback INTEGER NOT NULL,
    -- 1 once the deploy command was started (the environment may have changed).
    started INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- The last lines of the deploy and verify output.
    log TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL
);
CREATE INDEX deployments_environment ON deployments (repository, environment, created_at);
CREATE UNIQUE INDEX deployments_run ON deployments (run_id, environment, rollback) WHERE run_id <> '';
