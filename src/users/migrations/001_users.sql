-- users: accounts, balances in integer cents, and the append-only ledger of money movements.

create table users (
  id            uuid primary key,
  name          text not null,
  balance_cents bigint not null default 0 check (balance_cents >= 0),
  created_at    timestamptz not null default now()
);

-- Every change of a balance is one row here, written in the same transaction as the balance.
-- A debit or refund is keyed by the order id, so a retried pay debits once and a retried
-- refund refunds once; credits (admin top-ups) carry no order.
create table ledger_entries (
  id           bigint generated always as identity primary key,
  user_id      uuid not null references users (id),
  kind         text not null check (kind in ('debit', 'refund', 'credit')),
  order_id     uuid,
  amount_cents bigint not null check (amount_cents > 0),
  created_at   timestamptz not null default now(),
  constraint ledger_once_per_order unique (order_id, kind)
);

create index ledger_entries_user on ledger_entries (user_id, id);
