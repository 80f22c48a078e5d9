-- inventory: products, their stock, and allocations (holds) keyed by the order id.
-- Invariant, per product, at every instant: stock = remaining + held units + paid units.

create table products (
  id              uuid primary key,
  name            text not null,
  price_cents     bigint not null check (price_cents >= 0),
  -- Units ever stocked (creation plus every addStock); never below what is allocated.
  stock           integer not null check (stock >= 0),
  -- Units free to reserve. The safe strategies never let it go negative; the check is a last net.
  remaining       integer not null check (remaining >= 0),
  -- Bumped by every change of `remaining`, for the optimistic strategy.
  version         bigint not null default 0,
  per_buyer_limit integer check (per_buyer_limit > 0),
  hold_seconds    integer not null check (hold_seconds > 0),
  opens_at        timestamptz not null default now(),
  closes_at       timestamptz,
  ended_at        timestamptz,
  strategy        text not null,
  created_at      timestamptz not null default now()
);

-- No foreign key to products: an allocation is only inserted in the transaction that has just
-- decremented that product's row, and the key check would add a lock on the hottest row.
create table allocations (
  id           uuid primary key,
  product_id   uuid not null,
  buyer_id     uuid not null,
  quantity     integer not null check (quantity > 0),
  amount_cents bigint not null check (amount_cents >= 0),
  status       text not null check (status in ('held', 'paid', 'expired', 'cancelled')),
  expires_at   timestamptz not null,
  created_at   timestamptz not null default now(),
  settled_at   timestamptz
);

create index allocations_product on allocations (product_id, status);
create index allocations_held_expiry on allocations (expires_at) where status = 'held';

-- Units each buyer holds or has paid for, per product with a limit. Updated by a predicated
-- upsert in the reserving transaction, so two racing purchases of one buyer cannot both pass.
create table buyer_units (
  product_id uuid not null,
  buyer_id   uuid not null,
  units      integer not null check (units >= 0),
  primary key (product_id, buyer_id)
);
