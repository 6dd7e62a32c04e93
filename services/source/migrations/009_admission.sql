-- Admission: a new run waits (admitted_at 0) until its concurrency group
-- and the service's limits of active runs have room; its RunRequested is
-- published when it is admitted. Every earlier run was published when it
-- was made. The default (1: admitted) is for the runs a replica of the
-- version before inserts during a rolling upgrade: it published their
-- RunRequested itself. This version always writes the column.
ALTER TABLE runs ADD COLUMN admitted_at BIGINT NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN concurrency_group TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN concurrency_limit INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET admitted_at = created_at;
CREATE INDEX runs_waiting ON runs (repository_id, concurrency_group, created_at, id) WHERE admitted_at = 0 AND status = 'queued';
CREATE INDEX runs_open ON runs (repository_id, concurrency_group) WHERE status IN ('queued', 'running');
