-- The pipelines a run holds (.sluice.yaml's and those of .sluice/*.yaml
-- whose on: wanted its change): a JSON array of their names, "" standing
-- for .sluice.yaml's. Empty for a run made before there were several,
-- which holds .sluice.yaml's alone, and for a run whose files were missing
-- or invalid. A newer run supersedes an older one only when it holds every
-- pipeline the older one does, and a rerun holds its run's.
ALTER TABLE runs ADD COLUMN pipelines TEXT NOT NULL DEFAULT '';
