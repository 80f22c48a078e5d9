-- orders: the buyer's side of a purchase. The order id is minted before inventory reserves,
-- and it is the allocation's id in inventory, so every step of a purchase is keyed by it.

create table orders (
  id           uuid primary key,
  buyer_id     uuid not null,
  product_id   uuid not null,
  quantity     integer not null check (quantity > 0),
  amount_cents bigint not null check (amount_cents >= 0),
  status       text not null check (status in ('held', 'paid', 'expired', 'cancelled')),
  expires_at   timestamptz not null,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now()
);

create index orders_buyer on orders (buyer_id, created_at desc);
create index orders_product on orders (product_id, created_at);
create index orders_held_expiry on orders (expires_at) where status = 'held';

-- Idempotency keys, scoped to the buyer. A row is claimed (status_code null) before the work
-- starts and completed with the first definitive answer; a repeat gets that answer back.
create table idempotency_keys (
  buyer_id     uuid not null,
  key          text not null,
  scope        text not null,
  request_hash text not null,
  status_code  integer,
  response     jsonb,
  created_at   timestamptz not null default now(),
  primary key (buyer_id, key)
);

create index idempotency_keys_age on idempotency_keys (created_at);
