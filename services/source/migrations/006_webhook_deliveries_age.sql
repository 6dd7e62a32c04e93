-- The pruning of webhook_deliveries finds the old rows by their time.
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
