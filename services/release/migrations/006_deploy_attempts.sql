-- How many times a deployment's deploy command was started: more than once
-- when the release service was interrupted during it and the environment
-- redeploys on interrupt (on_interrupt: redeploy), up to three times.
ALTER TABLE deployments ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
UPDATE deployments SET attempts = 1 WHERE started = 1;
