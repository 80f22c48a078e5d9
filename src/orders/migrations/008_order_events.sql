-- order_events: the outbox of order changes. Every change of an order (recorded `held`, then
-- `paid`, `expired` or `cancelled`) writes its event in the statement that makes the change,
-- selected from that write's `returning`: the event exists exactly when the change committed, and
-- a change that did not happen (no row updated, the order already there) writes none. The relay
-- (src/orders/outbox-relay.ts) publishes unrelayed events to RabbitMQ and stamps `relayed_at` once
-- the broker has confirmed them; `GET /v1/admin/order-events` pages through them by `seq`.
--
-- The event carries no copy of the order, so the purchase's statement builds and stores no JSON
-- for it: an order's fields other than its status never change once it is recorded (and orders
-- are never deleted), and an event's kind is the status the change gave it, so the order as the
-- API showed it at the change is read back from its row (src/orders/outbox.ts). No foreign key
-- either: the event is written from the order's own row in the same statement, and a key check
-- would cost every order a trigger on the hot path.
create table order_events (
  -- What a consumer deduplicates on: the message id of every publish of the event.
  id         uuid primary key default gen_random_uuid(),
  -- The order the events were written in; the feed pages by it.
  seq        bigint generated always as identity unique,
  order_id   uuid not null,
  -- The order's new status.
  kind       text not null check (kind in ('held', 'paid', 'expired', 'cancelled')),
  created_at timestamptz not null default now(),
  relayed_at timestamptz
);

-- What the relay takes next. Relayed events leave it, so it stays as small as the backlog.
create index order_events_unrelayed on order_events (seq) where relayed_at is null;
