-- CancelRun: when someone asked for the run to be cancelled, and who.
ALTER TABLE runs ADD COLUMN cancel_requested_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT NOT NULL DEFAULT '';
