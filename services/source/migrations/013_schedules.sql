-- When each schedule of a repository's pipeline (on.schedule; schedule is
-- its cron expression and branch) fires next, in Unix nanoseconds. A
-- replica that finds it due moves next_fire on with a compare-and-set in
-- the transaction that records the schedule's run, so that however many
-- source replicas look, one run is made per firing.
CREATE TABLE schedules (
    repository_id TEXT NOT NULL,
    schedule TEXT NOT NULL,
    next_fire BIGINT NOT NULL,
    PRIMARY KEY (repository_id, schedule)
);
