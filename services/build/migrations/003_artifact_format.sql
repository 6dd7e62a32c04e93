-- Artifacts that are directories or globs are kept as gzipped tars: what
-- an artifact's content is (0: the file itself, 1: a gzipped tar;
-- artifacts.Format). Artifacts stored before are files.
ALTER TABLE artifacts ADD COLUMN format INTEGER NOT NULL DEFAULT 0;
