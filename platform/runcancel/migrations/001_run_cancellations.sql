-- Runs someone asked to cancel (RunCancelRequested), one row a run: a
-- stage does not start their work and stops what it holds of them.
CREATE TABLE run_cancellations (
    run_id TEXT PRIMARY KEY,
    requested_by TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);

CREATE INDEX run_cancellations_at ON run_cancellations (recorded_at);
