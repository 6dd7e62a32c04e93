-- Webhook subscriptions. event_types is a JSON array of CloudEvents types
-- or prefixes ending in "*"; repository is a repository name or ''.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    event_types TEXT NOT NULL,
    repository TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX subscriptions_repository ON subscriptions (repository);

-- One event on its way to one subscription. headers (JSON object of the
-- ce-* attributes) and body (the CDEvent JSON) are what is POSTed. A pending
-- delivery is due at next_attempt_at; a worker that takes it pushes
-- next_attempt_at past the attempt's timeout (its lease), so a delivery
-- whose worker died is taken again once the lease ends.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_subject TEXT NOT NULL,
    repository TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    headers TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt_count INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_created ON deliveries (created_at, id);
CREATE INDEX deliveries_subscription ON deliveries (subscription_id, created_at);

-- Every POST of a delivery, failed or not.
CREATE TABLE delivery_attempts (
    delivery_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    http_status INTEGER NOT NULL,
    error TEXT NOT NULL,
    duration_ns BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, number)
);
