-- ListDeliveries lists one run's deliveries (their events' chain id),
-- newest first.
CREATE INDEX deliveries_chain ON deliveries (chain_id, created_at, id);
