-- How many times a deployment's deploy command was started: more than once
-- when the release service was interrupted during it and the environment
-- redeploys on interrupt (on_interrupt: redeploy), up to three times.
ALTER TABLE deployments ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
UPDATE deployments SET attempts = 1 WHERE started = 1;
-- 1 on a deployment found interrupted after a later one replaced it
-- (another release, or a rollback, deployed there since): it failed, but
-- its release is not bad for it, and nothing rolls it back.
ALTER TABLE deployments ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
