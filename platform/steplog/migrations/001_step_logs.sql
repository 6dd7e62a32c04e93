-- Step output, one row a line, numbered from 1 per run without gaps.
CREATE TABLE step_logs (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    step TEXT NOT NULL,
    stream TEXT NOT NULL,
    text TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- A run's log is complete once its stage ended; tails stop there.
CREATE TABLE step_log_state (
    run_id TEXT PRIMARY KEY,
    complete INTEGER NOT NULL DEFAULT 0
);
