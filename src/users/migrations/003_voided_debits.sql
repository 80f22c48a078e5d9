-- A refund is recorded even when its order was never debited: a `void` row (0 cents) takes the
-- order's debit slot, so a debit that arrives after it (a payment whose call was still on its way
-- when the hold expired and was refunded, or that crossed the network after its caller gave up)
-- finds the slot taken and is refused instead of kept.
--
-- `debit` and `void` share one slot per order (the partial unique index): a refund's insert of the
-- void waits for a debit being written by another transaction, then meets it as a conflict and
-- refunds it (ON CONFLICT sees the committed row whatever the statement's snapshot), so the two
-- settle in one order or the other, never both kept, without a lock of their own.
alter table ledger_entries drop constraint ledger_entries_kind_check;
alter table ledger_entries add constraint ledger_entries_kind_check check (kind in ('debit', 'refund', 'credit', 'void'));
alter table ledger_entries drop constraint ledger_entries_amount_cents_check;
alter table ledger_entries add constraint ledger_entries_amount_cents_check check (amount_cents > 0 or (kind = 'void' and amount_cents = 0));
create unique index ledger_debit_slot on ledger_entries (order_id) where kind in ('debit', 'void');
