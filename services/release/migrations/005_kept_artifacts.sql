-- Release keeps a copy of each release's artifacts in its own object store
-- (sluice-release-artifacts), which does not expire like the build's
-- (sluice-artifacts, 30 days), so that a rollback finds them.
-- kept_object is the copy's name there: '' for a release made before the
-- copies were (its deploys fetch the build's object), for an artifact whose
-- copy failed for good, and once the copy was pruned.
ALTER TABLE release_artifacts ADD COLUMN kept_object TEXT NOT NULL DEFAULT '';
-- When the release's kept artifacts were pruned, in Unix nanoseconds: it is
-- neither deployed, nor one of the last keep-releases verified releases of
-- an environment, nor one that may still be deployed. 0 while they are
-- kept. A pruned release is not deployed again.
ALTER TABLE releases ADD COLUMN pruned_at BIGINT NOT NULL DEFAULT 0;
