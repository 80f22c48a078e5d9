-- Stock steps that must run as one short transaction inside the database, so that the hot
-- product row is locked for microseconds, never across a round trip to the app.

-- reserve_atomic: the `atomic` strategy's whole reservation in one round trip.
-- Params: p_allocation (the order id), p_product, p_buyer, p_quantity.
-- Returns one row: outcome ('OK', 'SOLD_OUT', 'PRODUCT_NOT_FOUND', 'SALE_NOT_OPEN', 'SALE_ENDED',
-- 'LIMIT_EXCEEDED'), the units left, the amount, the hold's expiry, the window's opening and the
-- per-buyer limit.
-- A repeated p_allocation raises unique_violation and changes nothing (the caller reads it back).
create function reserve_atomic(p_allocation uuid, p_product uuid, p_buyer uuid, p_quantity integer)
returns table (outcome text, remaining integer, amount_cents bigint, expires_at timestamptz, opens_at timestamptz,
               buyer_limit integer)
language plpgsql as $$
#variable_conflict use_column
declare
  v products%rowtype;
  v_left integer;
begin
  -- 1. A plain read (no lock) answers the refusals that need no write: most of a herd ends here.
  select * into v from products p where p.id = p_product;
  if not found then
    return query select 'PRODUCT_NOT_FOUND', 0, 0::bigint, null::timestamptz, null::timestamptz, null::integer;
    return;
  end if;
  if v.ended_at is not null or (v.closes_at is not null and v.closes_at <= now()) then
    return query select 'SALE_ENDED', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    return;
  end if;
  if v.opens_at > now() then
    return query select 'SALE_NOT_OPEN', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    return;
  end if;
  if v.per_buyer_limit is not null and p_quantity > v.per_buyer_limit then
    return query select 'LIMIT_EXCEEDED', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    return;
  end if;
  if v.remaining < p_quantity then
    return query select 'SOLD_OUT', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    return;
  end if;

  -- 2. The buyer's own counter first (no contention), so the hot row is locked last.
  if v.per_buyer_limit is not null then
    insert into buyer_units as b (product_id, buyer_id, units)
    values (p_product, p_buyer, p_quantity)
    on conflict (product_id, buyer_id) do update
      set units = b.units + excluded.units
      where b.units + excluded.units <= v.per_buyer_limit;
    if not found then
      return query select 'LIMIT_EXCEEDED', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
      return;
    end if;
  end if;

  -- 3. The predicated update: the only guard of the stock. The window is checked again here,
  --    at the instant of the write.
  update products p
     set remaining = p.remaining - p_quantity, version = p.version + 1
   where p.id = p_product
     and p.remaining >= p_quantity
     and p.ended_at is null
     and p.opens_at <= now()
     and (p.closes_at is null or p.closes_at > now())
  returning p.remaining into v_left;
  if not found then
    -- Lost the race for the last units (or the sale closed in between): undo the counter.
    if v.per_buyer_limit is not null then
      update buyer_units b set units = b.units - p_quantity
       where b.product_id = p_product and b.buyer_id = p_buyer;
    end if;
    select p.remaining into v_left from products p where p.id = p_product;
    return query select 'SOLD_OUT', coalesce(v_left, 0), 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    return;
  end if;

  -- 4. The allocation (the hold), in the same transaction as the decrement.
  insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at)
  values (p_allocation, p_product, p_buyer, p_quantity, v.price_cents * p_quantity, 'held',
          now() + make_interval(secs => v.hold_seconds));

  return query select 'OK', v_left, v.price_cents * p_quantity, now() + make_interval(secs => v.hold_seconds), v.opens_at, v.per_buyer_limit;
end
$$;

-- release_allocation: ends a hold (cancel or expiry) and returns its units to stock and to the
-- buyer's limit, in one transaction. Works for every strategy that keeps stock in `products`.
-- Params: p_allocation, p_status ('cancelled' or 'expired'), p_only_expired (true: only if the
-- hold's expiry has passed by the database's clock).
-- Returns the released allocation's product, buyer and quantity, or no row if it was not held.
create function release_allocation(p_allocation uuid, p_status text, p_only_expired boolean)
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
  update products p set remaining = p.remaining + a.quantity, version = p.version + 1
   where p.id = a.product_id;
  update buyer_units b set units = greatest(b.units - a.quantity, 0)
   where b.product_id = a.product_id and b.buyer_id = a.buyer_id;
  return query select a.product_id, a.buyer_id, a.quantity;
end
$$;
