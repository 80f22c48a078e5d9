-- order_events: the outbox of order changes. Every change of an order (recorded `held`, then
-- `paid`, `expired` or `cancelled`) writes its event in the statement that makes the change,
-- selected from that write's `returning`: the event exists exactly when the change committed, and
-- a change that did not happen (no row updated, the order already there) writes none. The relay
-- (src/orders/outbox-relay.ts) publishes unrelayed events to RabbitMQ and stamps `relayed_at` once
-- the broker has confirmed them; `GET /v1/admin/order-events` pages through them by `seq`.
--
-- No foreign key to orders: the event is written from the order's own row in the same statement,
-- and a key check would cost every order an index probe on the hot path.
create table order_events (
  -- What a consumer deduplicates on: the message id of every publish of the event.
  id         uuid primary key default gen_random_uuid(),
  -- The order the events were written in; the feed pages by it.
  seq        bigint generated always as identity unique,
  order_id   uuid not null,
  kind       text not null check (kind in ('held', 'paid', 'expired', 'cancelled')),
  -- The order as the API shows it once the change is made (order_fields_json).
  payload    jsonb not null,
  created_at timestamptz not null default now(),
  relayed_at timestamptz
);

-- What the relay takes next. Relayed events leave it, so it stays as small as the backlog.
create index order_events_unrelayed on order_events (seq) where relayed_at is null;
