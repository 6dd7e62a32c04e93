-- A test run's steps, in pipeline order: PENDING (1) until the test run
-- ends, then 2 succeeded, 3 failed, 4 timed out, 6 cancelled, or 5 skipped
-- when it did not run (domain.StepStatus).
CREATE TABLE test_steps (
    test_run_id TEXT NOT NULL REFERENCES test_runs (id),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    status INTEGER NOT NULL,
    exit_code INTEGER NOT NULL DEFAULT 0,
    duration_ns BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (test_run_id, position)
);
