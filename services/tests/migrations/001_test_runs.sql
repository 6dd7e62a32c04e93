-- One test run per run: the testing of that run's successful build.
CREATE TABLE test_runs (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    build_id TEXT NOT NULL,
    repository_id TEXT NOT NULL,
    repository_name TEXT NOT NULL,
    repository_url TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    branch TEXT NOT NULL,
    -- 1 running, 2 passed, 3 failed, 4 error (domain.Status).
    status INTEGER NOT NULL,
    -- How many workers took the test run; a worker's updates name its
    -- attempt, so one that lost the run cannot change it.
    attempt INTEGER NOT NULL,
    -- The event the current attempt is handling, and until when its worker
    -- holds the run; a worker that stops renewing loses it to the next.
    owner_event TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    passed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT NOT NULL DEFAULT '',
    failed_step TEXT NOT NULL DEFAULT '',
    exit_code INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL DEFAULT 0
);

-- A test run's suites, in report order.
CREATE TABLE test_suites (
    test_run_id TEXT NOT NULL REFERENCES test_runs (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    passed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    duration_ns BIGINT NOT NULL,
    PRIMARY KEY (test_run_id, position)
);

-- A test run's cases, in report order; status 1 passed, 2 failed, 3 skipped.
CREATE TABLE test_cases (
    test_run_id TEXT NOT NULL REFERENCES test_runs (id),
    position INTEGER NOT NULL,
    suite TEXT NOT NULL,
    name TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ns BIGINT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (test_run_id, position)
);
CREATE INDEX test_cases_status ON test_cases (test_run_id, status);
