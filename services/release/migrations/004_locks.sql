-- The locks that keep the replicas' work on one repository (its versions)
-- or one repository's environment (its deploys) apart, as leases
-- (locks.go): a lock is held by holder while expires_at (Unix nanoseconds)
-- is in the future and holder renews it; once it lapsed anyone may claim
-- it. token goes up by one with every claim, so a holder's writes are
-- fenced with it: a replica whose lease lapsed and was claimed again
-- writes nothing more. A row stays once made (a released lock has
-- expires_at 0), so the token never starts again.
CREATE TABLE release_locks (
    lock_key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
