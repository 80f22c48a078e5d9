-- reserve_atomic, redefined so every stock step takes its row locks in one order: the product
-- row first, then the buyer's `buyer_units` row. `release_allocation` and the pessimistic and
-- optimistic strategies already lock in that order; 002's version locked the buyer's row first,
-- so one buyer reserving and cancelling at the same instant could deadlock.
-- Params, returns: as in 002.
create or replace function reserve_atomic(p_allocation uuid, p_product uuid, p_buyer uuid, p_quantity integer)
returns table (outcome text, remaining integer, amount_cents bigint, expires_at timestamptz, opens_at timestamptz,
               buyer_limit integer)
language plpgsql as $$
#variable_conflict use_column
declare
  v products%rowtype;
  v_left integer;
  v_units integer;
begin
  -- 1. Plain reads (no lock) answer the refusals that need no write: most of a herd ends here.
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
  if v.per_buyer_limit is not null then
    select b.units into v_units from buyer_units b where b.product_id = p_product and b.buyer_id = p_buyer;
    if coalesce(v_units, 0) + p_quantity > v.per_buyer_limit then
      return query select 'LIMIT_EXCEEDED', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
      return;
    end if;
  end if;

  -- 2. The predicated update: the only guard of the stock, the window checked again at the write.
  update products p
     set remaining = p.remaining - p_quantity, version = p.version + 1
   where p.id = p_product
     and p.remaining >= p_quantity
     and p.ended_at is null
     and p.opens_at <= now()
     and (p.closes_at is null or p.closes_at > now())
  returning p.remaining into v_left;
  if not found then
    select p.remaining into v_left from products p where p.id = p_product;
    return query select 'SOLD_OUT', coalesce(v_left, 0), 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    return;
  end if;

  -- 3. The buyer's limit, as a predicated upsert (two racing purchases of one buyer cannot both
  --    pass). Lost that race: give the units back in this same transaction; nobody else saw them
  --    gone, since the product row stays locked until commit.
  if v.per_buyer_limit is not null then
    insert into buyer_units as b (product_id, buyer_id, units)
    values (p_product, p_buyer, p_quantity)
    on conflict (product_id, buyer_id) do update
      set units = b.units + excluded.units
      where b.units + excluded.units <= v.per_buyer_limit;
    if not found then
      update products p set remaining = p.remaining + p_quantity, version = p.version + 1 where p.id = p_product;
      return query select 'LIMIT_EXCEEDED', v_left + p_quantity, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
      return;
    end if;
  end if;

  -- 4. The allocation (the hold), in the same transaction as the decrement.
  insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at)
  values (p_allocation, p_product, p_buyer, p_quantity, v.price_cents * p_quantity, 'held',
          now() + make_interval(secs => v.hold_seconds));

  return query select 'OK', v_left, v.price_cents * p_quantity, now() + make_interval(secs => v.hold_seconds),
                      v.opens_at, v.per_buyer_limit;
end
$$;
