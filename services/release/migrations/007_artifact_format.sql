-- Artifacts that are directories or globs are kept as gzipped tars, which
-- a deploy unpacks into $SLUICE_ARTIFACTS_DIR/<name>/: what an artifact's
-- content is (0: the file itself, 1: a gzipped tar; artifacts.Format).
ALTER TABLE release_artifacts ADD COLUMN format INTEGER NOT NULL DEFAULT 0;
