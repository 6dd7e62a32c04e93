-- The pruning of processed_events (ProcessedExpiry) finds the old rows by
-- their time.
CREATE INDEX processed_events_at ON processed_events (processed_at);
