-- RerunRun: the run a run reruns, and the first stage it runs.
ALTER TABLE runs ADD COLUMN rerun_of TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN rerun_from TEXT NOT NULL DEFAULT '';
-- What the run's commits changed (sourcev1.Changes in protojson), as its
-- RunRequested carried them: a rerun's conditions see the same.
ALTER TABLE runs ADD COLUMN changes TEXT NOT NULL DEFAULT '';
