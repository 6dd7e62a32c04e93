-- Runs of pull (merge) requests: the request's number (0: not one) and
-- whether its head is in a fork. A repository's pull_request_secrets (0 or
-- 1) lets the runs of pull requests from its own branches have secrets;
-- its fork_pull_requests (0 or 1) lets pull requests from forks run at all.
ALTER TABLE runs ADD COLUMN pull_request BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN pull_request_fork INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN pull_request_secrets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE repositories ADD COLUMN fork_pull_requests INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_pull_request ON runs (repository_id, pull_request, created_at) WHERE pull_request > 0;
