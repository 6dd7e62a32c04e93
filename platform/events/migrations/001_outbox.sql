-- Events waiting to be published; written in the same transaction as the
-- state change they announce.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbox_created ON outbox (created_at, id);

-- Events each consumer has handled, recorded with the state change, so a
-- redelivered event has no second effect.
CREATE TABLE processed_events (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
