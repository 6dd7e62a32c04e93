-- What the poll last saw of each branch and tag of a repository (besides
-- its own branch, which last_seen_commit follows): the object the ref
-- pointed to (a commit, or an annotated tag's object). The poll runs a ref
-- that moved, or is new, when the pipeline's on: section asks for it, so
-- that a push whose webhook was lost still runs; what was there when the
-- repository was registered (or, for a repository registered before this
-- table, at its first poll) is only recorded. The row with ref '' marks
-- that snapshot as taken.
CREATE TABLE ref_heads (
    repository_id TEXT NOT NULL,
    ref TEXT NOT NULL,
    object_sha TEXT NOT NULL,
    PRIMARY KEY (repository_id, ref)
);
