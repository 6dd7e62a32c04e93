-- What a commit's statuses on its forge were last said to be, per context
-- ("sluice", "sluice/build", ...): the newest run of the commit says it,
-- and sequence grows with every change, so that notify, which sets them on
-- the forge, can tell a late one from a newer one (CommitStatusChanged).
CREATE TABLE commit_statuses (
    repository_id TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    context TEXT NOT NULL,
    run_id TEXT NOT NULL,
    run_created_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    PRIMARY KEY (repository_id, commit_sha, context)
);
