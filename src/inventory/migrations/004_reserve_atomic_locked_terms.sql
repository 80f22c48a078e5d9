-- reserve_atomic, redefined so a sale is made on the terms of the row it locks. 003 priced the
-- allocation, set its hold and checked the buyer's limit from the plain read that comes before
-- the predicated update: a price, hold or limit changed between that read and the update (the
-- update waits for the change's row lock, then sees the new row) sold on the old terms. Now the
-- update returns price, hold and limit under its lock and everything after it uses those; when
-- the update finds nothing, the refusal says why from a fresh read (the sale may have ended
-- meanwhile), not always "sold out".
-- Params, returns: as in 002.
create or replace function reserve_atomic(p_allocation uuid, p_product uuid, p_buyer uuid, p_quantity integer)
returns table (outcome text, remaining integer, amount_cents bigint, expires_at timestamptz, opens_at timestamptz,
               buyer_limit integer)
language plpgsql as $$
#variable_conflict use_column
declare
  v products%rowtype;
  v_left integer;
  v_price bigint;
  v_hold integer;
  v_limit integer;
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

  -- 2. The predicated update: the only guard of the stock, the window checked again at the write,
  --    and the terms of the sale read from the row it locks.
  update products p
     set remaining = p.remaining - p_quantity, version = p.version + 1
   where p.id = p_product
     and p.remaining >= p_quantity
     and p.ended_at is null
     and p.opens_at <= now()
     and (p.closes_at is null or p.closes_at > now())
  returning p.remaining, p.price_cents, p.hold_seconds, p.per_buyer_limit into v_left, v_price, v_hold, v_limit;
  if not found then
    select * into v from products p where p.id = p_product;
    if not found then
      return query select 'PRODUCT_NOT_FOUND', 0, 0::bigint, null::timestamptz, null::timestamptz, null::integer;
    elsif v.ended_at is not null or (v.closes_at is not null and v.closes_at <= now()) then
      return query select 'SALE_ENDED', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    elsif v.opens_at > now() then
      return query select 'SALE_NOT_OPEN', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    else
      return query select 'SOLD_OUT', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
    end if;
    return;
  end if;

  -- 3. The buyer's limit as it is now, as a predicated upsert (two racing purchases of one buyer
  --    cannot both pass). Over a limit set meanwhile, or lost that race: give the units back in
  --    this same transaction; nobody else saw them gone, since the product row stays locked.
  if v_limit is not null then
    if p_quantity <= v_limit then
      insert into buyer_units as b (product_id, buyer_id, units)
      values (p_product, p_buyer, p_quantity)
      on conflict (product_id, buyer_id) do update
        set units = b.units + excluded.units
        where b.units + excluded.units <= v_limit;
    end if;
    if p_quantity > v_limit or not found then
      update products p set remaining = p.remaining + p_quantity, version = p.version + 1 where p.id = p_product;
      return query select 'LIMIT_EXCEEDED', v_left + p_quantity, 0::bigint, null::timestamptz, v.opens_at, v_limit;
      return;
    end if;
  end if;

  -- 4. The allocation (the hold), in the same transaction as the decrement, at the locked price.
  insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at)
  values (p_allocation, p_product, p_buyer, p_quantity, v_price * p_quantity, 'held',
          now() + make_interval(secs => v_hold));

  return query select 'OK', v_left, v_price * p_quantity, now() + make_interval(secs => v_hold), v.opens_at, v_limit;
end
$$;
