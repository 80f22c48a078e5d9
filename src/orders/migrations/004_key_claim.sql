-- Which claim holds a key: a random id the claiming request mints. A claim that went stale (its
-- request stalled past STALE_CLAIM, say behind a database outage) may be taken over by a retry,
-- which writes its own id; the stalled request, if it wakes, then finds another claim on the key
-- and writes nothing under it (no answer, no order). Keys claimed before this column have none.
alter table idempotency_keys add column claim_id uuid;
