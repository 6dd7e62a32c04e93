-- RerunRun: the run a run reruns, and the first stage it runs.
ALTER TABLE runs ADD COLUMN rerun_of TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN rerun_from TEXT NOT NULL DEFAULT '';
