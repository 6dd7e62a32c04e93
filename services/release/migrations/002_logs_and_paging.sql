-- A failed deployment's failing step of the release log (deploy:<env>,
-- verify:<env> or rollback:<env>) and the last lines of that command's
-- output, a JSON array. The whole output is in step_logs (platform/steplog),
-- under the run's id, or the deployment's for a rollback made through the
-- API. deployments.log is no longer written.
ALTER TABLE deployments ADD COLUMN failed_step TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN last_log_lines TEXT NOT NULL DEFAULT '[]';

-- Pages of a repository's releases, newest first.
CREATE INDEX releases_created ON releases (repository, created_at, id);
