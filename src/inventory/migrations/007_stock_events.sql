-- The `event-sourced` strategy: each product it sells has a stream of stock events numbered 1, 2,
-- 3, … with no gap, append-only, and snapshots of the stream every stock_snapshot_every() events.
-- A change is made by appending the next number: two writers that read the same stream both try
-- the same number, and the unique (product_id, seq) lets exactly one of them have it. The
-- allocations stay the record of holds and `products.remaining` is kept in step, each in the
-- transaction of its event, so everything that reads them (orders, the sweeper, the audit) works
-- unchanged; the stream can be replayed from seq 1 to rebuild `remaining`.
--
-- Lock order of every writer of a stream: the allocation's row (release, confirm), then the next
-- sequence number, then the product row. Whoever holds an uncommitted event holds the stream's
-- next number, so at most one writer per product is past that point at any instant.

create table stock_events (
  product_id    uuid not null,
  seq           bigint not null check (seq > 0),
  kind          text not null check (kind in ('stocked', 'reserved', 'released', 'expired', 'purchased')),
  -- `stocked`: units added to the stock (negative: removed); the others: the allocation's quantity.
  units         integer not null,
  allocation_id uuid,
  buyer_id      uuid,
  at            timestamptz not null default now(),
  primary key (product_id, seq),
  check ((kind = 'stocked') = (allocation_id is null)),
  check ((allocation_id is null) = (buyer_id is null)),
  check (kind = 'stocked' or units > 0)
);

-- An allocation is reserved once and ends once: released, expired or purchased, never two of them.
create unique index stock_events_reserved on stock_events (product_id, allocation_id) where kind = 'reserved';
create unique index stock_events_ended on stock_events (product_id, allocation_id)
  where kind in ('released', 'expired', 'purchased');
-- A buyer's own events, for the per-buyer limit.
create index stock_events_buyer on stock_events (product_id, buyer_id) where buyer_id is not null;

-- The stream's totals as of event `seq`, written with that event when seq is a multiple of
-- stock_snapshot_every(). Available = stocked - held - paid.
create table stock_snapshots (
  product_id uuid not null,
  seq        bigint not null,
  stocked    integer not null,
  held       integer not null,
  paid       integer not null,
  at         timestamptz not null default now(),
  primary key (product_id, seq)
);

-- stock_snapshot_every: how many events apart a stream's snapshots are.
create function stock_snapshot_every()
returns integer
language sql immutable as $$
  select 100
$$;

-- stock_projection: a stream as of its latest event, from its latest snapshot plus the events
-- after it (fewer than stock_snapshot_every()), never the whole history.
-- Params: p_product; p_buyer (null: skip the buyer's units).
-- Returns one row: the latest seq (0: no event yet), stocked, held, paid and available units,
-- p_buyer's units held or paid (counted from the buyer's own events), the snapshot's seq it
-- started from (0: none) and how many events it replayed after it.
-- One statement, so one instant: it sees a prefix 1..seq of the stream (an event is numbered only
-- by a writer that saw the one before it committed).
create function stock_projection(p_product uuid, p_buyer uuid)
returns table (seq bigint, stocked integer, held integer, paid integer, available integer, buyer_units integer,
               from_seq bigint, replayed integer)
language sql stable as $$
  with snapshot as (
    select * from (
      (select s.seq, s.stocked, s.held, s.paid from stock_snapshots s
        where s.product_id = p_product order by s.seq desc limit 1)
      union all
      select 0::bigint, 0, 0, 0
    ) candidates order by seq desc limit 1
  ),
  totals as (
    select sn.seq as from_seq,
           coalesce(max(e.seq), sn.seq) as seq,
           sn.stocked + coalesce(sum(e.units) filter (where e.kind = 'stocked'), 0)::integer as stocked,
           sn.held + coalesce(sum(case e.kind when 'reserved' then e.units
                                              when 'stocked' then 0
                                              else -e.units end), 0)::integer as held,
           sn.paid + coalesce(sum(e.units) filter (where e.kind = 'purchased'), 0)::integer as paid,
           count(e.seq)::integer as replayed
      from snapshot sn
      left join stock_events e on e.product_id = p_product and e.seq > sn.seq
     group by sn.seq, sn.stocked, sn.held, sn.paid
  )
  select t.seq, t.stocked, t.held, t.paid, t.stocked - t.held - t.paid,
         (select coalesce(sum(case b.kind when 'reserved' then b.units
                                          when 'purchased' then 0
                                          else -b.units end), 0)::integer
            from stock_events b
           where p_buyer is not null and b.product_id = p_product and b.buyer_id = p_buyer),
         t.from_seq, t.replayed
    from totals t
$$;

-- try_append_stock_event: appends an event as number p_seq of the product's stream, if that
-- number is free; writes the stream's snapshot when p_seq is a multiple of stock_snapshot_every().
-- Params: p_product, p_seq, p_kind, p_units, p_allocation, p_buyer (null for `stocked`).
-- Returns false when p_seq is taken (another writer appended first; nothing was written). A
-- number held by an uncommitted writer is waited for, then judged by its outcome. A second
-- `reserved`, or a second ending, of one allocation raises unique_violation.
create function try_append_stock_event(p_product uuid, p_seq bigint, p_kind text, p_units integer,
                                       p_allocation uuid, p_buyer uuid)
returns boolean
language plpgsql as $$
declare
  s record;
begin
  insert into stock_events (product_id, seq, kind, units, allocation_id, buyer_id)
  values (p_product, p_seq, p_kind, p_units, p_allocation, p_buyer)
  on conflict (product_id, seq) do nothing;
  if not found then
    return false;
  end if;
  if p_seq % stock_snapshot_every() = 0 then
    select * into s from stock_projection(p_product, null);
    if s.seq <> p_seq then
      raise exception 'stock stream of product % ends at % while appending %', p_product, s.seq, p_seq;
    end if;
    insert into stock_snapshots (product_id, seq, stocked, held, paid)
    values (p_product, p_seq, s.stocked, s.held, s.paid);
  end if;
  return true;
end
$$;

-- append_stock_event: appends an event at the end of the product's stream, whatever is on it (a
-- release, an expiry, a purchase, stock an admin adds or removes: none of them is refused by
-- what the stream holds). Waits for a writer holding the next number, then tries the number after.
-- Params: as try_append_stock_event, without p_seq. Returns the event's seq.
create function append_stock_event(p_product uuid, p_kind text, p_units integer, p_allocation uuid, p_buyer uuid)
returns bigint
language plpgsql as $$
declare
  v_seq bigint;
begin
  for attempt in 1..1000 loop
    select coalesce(max(e.seq), 0) + 1 into v_seq from stock_events e where e.product_id = p_product;
    if try_append_stock_event(p_product, v_seq, p_kind, p_units, p_allocation, p_buyer) then
      return v_seq;
    end if;
  end loop;
  raise exception 'could not append to the stock stream of product % in 1000 tries', p_product;
end
$$;

-- reserve_event_sourced: the `event-sourced` strategy's reservation, one attempt in one round trip.
-- Params: p_allocation (the order id), p_product, p_buyer, p_quantity.
-- Returns one row: outcome ('OK', 'CLASH', 'SOLD_OUT', 'PRODUCT_NOT_FOUND', 'SALE_NOT_OPEN',
-- 'SALE_ENDED', 'LIMIT_EXCEEDED'), the units left, the amount, the hold's expiry, the window's
-- opening, the per-buyer limit, and what the decision read: the snapshot's seq it started from and
-- how many events it replayed after it.
-- 'CLASH': another writer appended the number this attempt read as next; nothing was written, and
-- the caller tries again with a fresh read. Raises serialization_failure (40001, nothing written)
-- when the product's terms changed between the read and the write: try again as well.
-- A repeated p_allocation raises unique_violation and changes nothing (the caller reads it back).
create function reserve_event_sourced(p_allocation uuid, p_product uuid, p_buyer uuid, p_quantity integer)
returns table (outcome text, remaining integer, amount_cents bigint, expires_at timestamptz, opens_at timestamptz,
               buyer_limit integer, from_seq bigint, replayed integer)
language plpgsql as $$
#variable_conflict use_column
declare
  v record;
  v_left integer;
  v_price bigint;
  v_hold integer;
  v_limit integer;
begin
  -- 1. The terms and the stream as of one instant; the buyer's units only where a limit counts them.
  select p.ended_at is not null or (p.closes_at is not null and p.closes_at <= now()) as ended,
         p.opens_at > now() as not_open, p.opens_at, p.per_buyer_limit,
         s.seq, s.available, s.buyer_units, s.from_seq, s.replayed
    into v
    from products p
   cross join lateral stock_projection(p.id, case when p.per_buyer_limit is null then null else p_buyer end) s
   where p.id = p_product;
  if not found then
    return query select 'PRODUCT_NOT_FOUND', 0, 0::bigint, null::timestamptz, null::timestamptz, null::integer, 0::bigint, 0;
    return;
  end if;
  if v.ended then
    return query select 'SALE_ENDED', v.available, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
    return;
  end if;
  if v.not_open then
    return query select 'SALE_NOT_OPEN', v.available, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
    return;
  end if;
  if v.per_buyer_limit is not null and p_quantity > v.per_buyer_limit then
    return query select 'LIMIT_EXCEEDED', v.available, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
    return;
  end if;
  if v.available < p_quantity then
    return query select 'SOLD_OUT', v.available, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
    return;
  end if;
  if v.per_buyer_limit is not null and v.buyer_units + p_quantity > v.per_buyer_limit then
    return query select 'LIMIT_EXCEEDED', v.available, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
    return;
  end if;

  -- 2. The decision holds only if nothing was appended since the read: take the next number.
  if not try_append_stock_event(p_product, v.seq + 1, 'reserved', p_quantity, p_allocation, p_buyer) then
    return query select 'CLASH', v.available, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
    return;
  end if;

  -- 3. The product row, in step with the stream; the sale is made on the terms of the row it
  --    locks (an admin may have changed price, hold, limit or window since the read, without an event).
  update products p
     set remaining = p.remaining - p_quantity, version = p.version + 1
   where p.id = p_product
     and p.ended_at is null
     and p.opens_at <= now()
     and (p.closes_at is null or p.closes_at > now())
     and (p.per_buyer_limit is null
          or (v.per_buyer_limit is not null and v.buyer_units + p_quantity <= p.per_buyer_limit))
  returning p.remaining, p.price_cents, p.hold_seconds, p.per_buyer_limit into v_left, v_price, v_hold, v_limit;
  if not found then
    raise exception 'the terms of product % changed during the reservation', p_product using errcode = '40001';
  end if;
  if v_left <> v.available - p_quantity then
    raise exception 'product % has % units remaining but its stock stream leaves %', p_product, v_left, v.available - p_quantity;
  end if;

  -- 4. The allocation (the hold), at the locked price.
  insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at)
  values (p_allocation, p_product, p_buyer, p_quantity, v_price * p_quantity, 'held',
          now() + make_interval(secs => v_hold));

  return query select 'OK', v_left, v_price * p_quantity, now() + make_interval(secs => v_hold), v.opens_at, v_limit,
                      v.from_seq, v.replayed;
end
$$;

-- release_event_sourced: ends a held allocation of an event-sourced product (cancel or expiry):
-- the allocation's status, a `released` (cancel) or `expired` event, the units back in
-- `remaining`, in one transaction.
-- Params: p_allocation, p_status ('cancelled' or 'expired'), p_only_expired (true: only if the
-- hold's expiry has passed by the database's clock).
-- Returns the released allocation's product, buyer and quantity, or no row if it was not held.
create function release_event_sourced(p_allocation uuid, p_status text, p_only_expired boolean)
returns table (product_id uuid, buyer_id uuid, quantity integer)
language plpgsql as $$
#variable_conflict use_column
declare
  a allocations%rowtype;
begin
  update allocations al
     set status = p_status, settled_at = now()
   where al.id = p_allocation
     and al.status = 'held'
     and (not p_only_expired or al.expires_at <= now())
  returning * into a;
  if not found then
    return;
  end if;
  perform append_stock_event(a.product_id, case p_status when 'cancelled' then 'released' when 'expired' then 'expired' end,
                             a.quantity, a.id, a.buyer_id);
  update products p set remaining = p.remaining + a.quantity, version = p.version + 1
   where p.id = a.product_id;
  return query select a.product_id, a.buyer_id, a.quantity;
end
$$;

-- confirm_event_sourced: turns a held, unexpired allocation of an event-sourced product into a
-- sale, with its `purchased` event, in one transaction (`remaining` does not change).
-- Params: p_allocation.
-- Returns the paid allocation, or no row if it was not held or has expired.
create function confirm_event_sourced(p_allocation uuid)
returns setof allocations
language plpgsql as $$
declare
  a allocations%rowtype;
begin
  update allocations al
     set status = 'paid', settled_at = now()
   where al.id = p_allocation
     and al.status = 'held'
     and al.expires_at > now()
  returning * into a;
  if not found then
    return;
  end if;
  perform append_stock_event(a.product_id, 'purchased', a.quantity, a.id, a.buyer_id);
  return next a;
end
$$;
