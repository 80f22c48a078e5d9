-- A hold the Redis gate granted that never reached PostgreSQL, written here by the reconciler as
-- `cancelled` and voided before the gate gives its unit back: a late message for it then finds the
-- id taken, and the consumer records no order for it. Never counted against `remaining`.
alter table allocations add column voided boolean not null default false;
