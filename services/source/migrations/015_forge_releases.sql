-- Whether each release of a repository is made on its forge too (0 or 1):
-- source then publishes ForgeReleaseRequested as it folds the release.
ALTER TABLE repositories ADD COLUMN forge_releases INTEGER NOT NULL DEFAULT 0;
