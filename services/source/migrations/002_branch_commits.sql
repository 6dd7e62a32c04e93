-- The commits that have a run, one row per repository, branch and commit,
-- whatever made the run (a push, the poll, a manual trigger; branch is ''
-- for a run of a tag or a sha). A push or the poll inserts its row in the
-- transaction that records its run and makes no run when the row is there,
-- so two replicas, or a webhook racing the poll, make one run of a commit.
-- run_id is the commit's latest run: a manual trigger may run it again.
CREATE TABLE branch_commits (
    repository_id TEXT NOT NULL REFERENCES repositories (id),
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (repository_id, branch, commit_sha)
);

-- The runs made before this table: run ids are UUIDv7, so the greatest is
-- the latest.
INSERT INTO branch_commits (repository_id, branch, commit_sha, run_id)
SELECT repository_id, branch, commit_sha, MAX(id) FROM runs GROUP BY repository_id, branch, commit_sha;
