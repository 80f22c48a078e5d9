-- owed_refunds: refunds orders owes a buyer and could not make yet. The sweeper expires a held
-- order and returns its units whatever users' database is doing; when the refund of any debit
-- the order had cannot be made (users unreachable, or the refund failed), the refund is recorded
-- here in the statement that marks the order, and later sweeps make it and delete the row. Orders
-- cannot read users' ledger, so an expired order whose refund was not made is owed whether or not
-- it was ever debited: the refund is keyed by the order id in users' ledger, so making it is
-- idempotent (0 cents for an order never debited, nothing more for one refunded already).
create table owed_refunds (
  order_id   uuid primary key references orders (id),
  buyer_id   uuid not null,
  owed_since timestamptz not null default now(),
  -- Failed attempts to make it, and why the last one failed: what an operator looks at.
  attempts   integer not null default 0,
  last_error text
);

-- The oldest first: a refund owed longest is made first once users is back.
create index owed_refunds_oldest on owed_refunds (owed_since, order_id);
