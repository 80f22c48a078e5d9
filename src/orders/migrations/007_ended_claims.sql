-- A claim whose request ended without an outcome (a store failed around its step) is marked
-- ended rather than deleted: a retry with the same request takes it over at once and knows it
-- resumes that request (a payment found already paid was paid by it), instead of waiting out the
-- 5-minute take-over.
alter table idempotency_keys add column ended_at timestamptz;
