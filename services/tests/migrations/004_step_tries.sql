-- The step model (depends_on, when, retry): how many times a step ran,
-- and why one did not run.
ALTER TABLE test_steps ADD COLUMN tries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE test_steps ADD COLUMN reason TEXT NOT NULL DEFAULT '';
