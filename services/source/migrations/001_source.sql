-- Registered repositories. The webhook secret is stored as given; the
-- mirror lives under <data-dir>/mirrors/<id>.
CREATE TABLE repositories (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    branch TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    last_seen_commit TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

-- Runs and their summary folded from the stages' events. status, run_trigger:
-- the domain package's lower-case names. pipeline: protojson of
-- sluice.source.v1.Pipeline, '' when the pipeline file was missing or bad.
-- version counts stored changes (watchers compare it).
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    repository_id TEXT NOT NULL REFERENCES repositories (id),
    commit_sha TEXT NOT NULL,
    ref TEXT NOT NULL,
    branch TEXT NOT NULL,
    run_trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL DEFAULT 0,
    failure_reason TEXT NOT NULL DEFAULT '',
    release_version TEXT NOT NULL DEFAULT '',
    commit_message TEXT NOT NULL DEFAULT '',
    pipeline TEXT NOT NULL DEFAULT '',
    version BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_repository_created ON runs (repository_id, created_at, id);

-- One row per stage of a run (build, test, release); last_log_lines is a
-- JSON array of strings.
CREATE TABLE run_stages (
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at BIGINT NOT NULL DEFAULT 0,
    ended_at BIGINT NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    failed_step TEXT NOT NULL DEFAULT '',
    exit_code INTEGER NOT NULL DEFAULT 0,
    last_log_lines TEXT NOT NULL DEFAULT '[]',
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, name)
);

-- Webhook deliveries that made a run, so a redelivery makes no second one.
CREATE TABLE webhook_deliveries (
    repository_id TEXT NOT NULL REFERENCES repositories (id),
    delivery_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, delivery_id)
);
