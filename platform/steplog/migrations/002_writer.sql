-- The writer that holds a run's log. Opening a writer makes it the
-- holder (writer + 1); the writer before it (a worker that lost the run,
-- or crashed) can store no more lines. writing is 1 while a writer holds
-- the log and has not closed it: the next writer says in the log that
-- lines its predecessor had not stored are lost.
ALTER TABLE step_log_state ADD COLUMN writer BIGINT NOT NULL DEFAULT 0;
ALTER TABLE step_log_state ADD COLUMN writing INTEGER NOT NULL DEFAULT 0;
