-- Two optional rules of a product's sale, judged by every strategy in its reservation step (the
-- stored functions below, the TypeScript strategies' shared checks, the Redis gate's script):
-- accounts_before: only accounts created before this moment may buy (`ACCOUNT_TOO_NEW`): accounts
--   are cheap, and a script that signs up a thousand of them on the morning of a drop gets nothing.
-- requires_funds: a buyer whose balance, less their other held orders, does not cover the hold is
--   refused (`INSUFFICIENT_FUNDS`): an account with no money holds no stock.
alter table products
  add column accounts_before timestamptz,
  add column requires_funds boolean not null default false;

-- The reservation functions take the buyer's spendable balance: their signatures change.
drop function reserve_atomic(uuid, uuid, uuid, integer);
drop function reserve_group(uuid, uuid[], uuid[], integer[]);
drop function reserve_event_sourced(uuid, uuid, uuid, integer);

-- account_created_at: when a user's account was made, read from its id: users are minted as
-- UUIDv7, whose first 48 bits are the Unix time in milliseconds (RFC 9562, 5.7). Null for an id of
-- another version, whose age cannot be told (a product that admits only older accounts refuses it).
-- Params: p_user. Immutable: an id's time never changes.
create or replace function account_created_at(p_user uuid)
returns timestamptz
language sql immutable as $$
  select case when substr(p_user::text, 15, 1) = '7'
              then to_timestamp(('x' || lpad(replace(substr(p_user::text, 1, 13), '-', ''), 16, '0'))::bit(64)::bigint / 1000.0)
         end
$$;

-- reserve_atomic: the `atomic` strategy's whole reservation in one round trip.
-- Params: p_allocation (the order id), p_product, p_buyer, p_quantity, p_spendable (the buyer's
-- balance less their other held orders, in cents; null: not known).
-- Returns one row: outcome ('OK', 'SOLD_OUT', 'PRODUCT_NOT_FOUND', 'SALE_NOT_OPEN', 'SALE_ENDED',
-- 'ACCOUNT_TOO_NEW', 'LIMIT_EXCEEDED', 'INSUFFICIENT_FUNDS', 'FUNDS_UNKNOWN'), the units left, the
-- amount (of the hold; of the refused one for the two about funds), the hold's expiry, the window's
-- opening and the per-buyer limit.
-- A product's two optional rules: `accounts_before` admits only accounts created before it (their
-- age read from the buyer's id, `account_created_at`); `requires_funds` refuses a buyer whose
-- spendable balance does not cover the hold, and asks for it ('FUNDS_UNKNOWN', nothing done) when
-- the caller did not say it.
-- A repeated p_allocation raises unique_violation and changes nothing (the caller reads it back).
-- Locks are taken product row first, then the buyer's `buyer_units` row, the order of every other
-- stock step (`release_allocation`, the pessimistic and optimistic strategies), so one buyer
-- reserving and cancelling at the same instant cannot deadlock. The sale is made on the terms of
-- the row the predicated update locks (price, hold, limit), not on those of the plain read before
-- it: a change committed in between is waited for and then obeyed. When the update finds nothing,
-- a fresh read says why (the sale may have ended meanwhile), not always "sold out".
create or replace function reserve_atomic(p_allocation uuid, p_product uuid, p_buyer uuid, p_quantity integer,
                                          p_spendable bigint)
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
  if v.accounts_before is not null and coalesce(account_created_at(p_buyer) >= v.accounts_before, true) then
    return query select 'ACCOUNT_TOO_NEW', v.remaining, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit;
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
  if v.requires_funds and (p_spendable is null or p_spendable < v.price_cents * p_quantity) then
    return query select case when p_spendable is null then 'FUNDS_UNKNOWN' else 'INSUFFICIENT_FUNDS' end,
                        v.remaining, v.price_cents * p_quantity, null::timestamptz, v.opens_at, v.per_buyer_limit;
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

-- reserve_group: decides a whole line of reservations of one product in one statement, one round
-- trip, one transaction (the `queue` strategy). It locks the product row once and grants in the
-- order given (the order the server received them) while stock and each buyer's limit allow; a
-- request for more than remains is refused whole, and a later, smaller one may still take what is
-- left. Then one decrement by the total granted, one insert of every granted allocation, one
-- upsert of each buyer's units. An id that already has an allocation (a retry) is answered with it
-- and takes nothing. The product's rules are judged per request as `reserve_atomic` judges them
-- (p_spendables: each buyer's spendable balance in cents, null where not known). Returns one row
-- per request, in the order given.
create or replace function reserve_group(p_product uuid, p_ids uuid[], p_buyers uuid[], p_quantities integer[],
                                         p_spendables bigint[])
returns table (allocation_id uuid, outcome text, remaining integer, amount_cents bigint, expires_at timestamptz,
               opens_at timestamptz, buyer_limit integer, status text)
language plpgsql as $$
#variable_conflict use_column
declare
  v products%rowtype;
  v_now timestamptz := now();
  v_left integer;
  v_expires timestamptz;
  v_units jsonb := '{}'::jsonb;
  v_have integer;
  v_outcomes text[] := '{}';
  v_left_after integer[] := '{}';
  v_granted_ids uuid[] := '{}';
  v_granted_buyers uuid[] := '{}';
  v_granted_quantities integer[] := '{}';
  v_existing jsonb;
  v_ended boolean;
  v_not_open boolean;
  i integer;
begin
  -- 1. The product row, locked for the whole group: the only guard of its stock.
  select * into v from products p where p.id = p_product for update;
  if not found then
    return query select t.id, 'PRODUCT_NOT_FOUND', 0, 0::bigint, null::timestamptz, null::timestamptz, null::integer, null::text
                   from unnest(p_ids) as t(id);
    return;
  end if;
  v_left := v.remaining;
  v_expires := v_now + make_interval(secs => v.hold_seconds);
  v_ended := v.ended_at is not null or (v.closes_at is not null and v.closes_at <= v_now);
  v_not_open := v.opens_at > v_now;

  -- 2. Ids made before (retries): answered with their allocation, whatever the window says now.
  select coalesce(jsonb_object_agg(a.id, jsonb_build_object('amount', a.amount_cents, 'expires', a.expires_at,
                                                            'status', a.status)), '{}'::jsonb)
    into v_existing from allocations a where a.id = any(p_ids);
  -- 3. Each buyer's units so far, read under the product's lock (every change of them takes it).
  if v.per_buyer_limit is not null then
    select coalesce(jsonb_object_agg(b.buyer_id, b.units), '{}'::jsonb) into v_units
      from buyer_units b where b.product_id = p_product and b.buyer_id = any(p_buyers);
  end if;

  -- 4. In arrival order. (Arrays, not a growing jsonb: a group of 500 stays linear.)
  for i in 1 .. coalesce(array_length(p_ids, 1), 0) loop
    if v_existing ? p_ids[i]::text or p_ids[i] = any(v_granted_ids) then
      -- Made before, or earlier in this group: answered with that allocation.
      v_outcomes := array_append(v_outcomes, 'EXISTS');
    elsif v_ended then
      v_outcomes := array_append(v_outcomes, 'SALE_ENDED');
    elsif v_not_open then
      v_outcomes := array_append(v_outcomes, 'SALE_NOT_OPEN');
    elsif v.accounts_before is not null and coalesce(account_created_at(p_buyers[i]) >= v.accounts_before, true) then
      v_outcomes := array_append(v_outcomes, 'ACCOUNT_TOO_NEW');
    elsif v.per_buyer_limit is not null and p_quantities[i] > v.per_buyer_limit then
      v_outcomes := array_append(v_outcomes, 'LIMIT_EXCEEDED');
    elsif p_quantities[i] > v_left then
      v_outcomes := array_append(v_outcomes, 'SOLD_OUT');
    elsif v.requires_funds and p_spendables[i] is null then
      v_outcomes := array_append(v_outcomes, 'FUNDS_UNKNOWN');
    elsif v.requires_funds and p_spendables[i] < v.price_cents * p_quantities[i] then
      v_outcomes := array_append(v_outcomes, 'INSUFFICIENT_FUNDS');
    else
      v_have := case when v.per_buyer_limit is null then 0 else coalesce((v_units ->> p_buyers[i]::text)::integer, 0) end;
      if v.per_buyer_limit is not null and v_have + p_quantities[i] > v.per_buyer_limit then
        v_outcomes := array_append(v_outcomes, 'LIMIT_EXCEEDED');
      else
        v_left := v_left - p_quantities[i];
        if v.per_buyer_limit is not null then
          v_units := jsonb_set(v_units, array[p_buyers[i]::text], to_jsonb(v_have + p_quantities[i]));
        end if;
        v_granted_ids := array_append(v_granted_ids, p_ids[i]);
        v_granted_buyers := array_append(v_granted_buyers, p_buyers[i]);
        v_granted_quantities := array_append(v_granted_quantities, p_quantities[i]);
        v_outcomes := array_append(v_outcomes, 'OK');
      end if;
    end if;
    v_left_after := array_append(v_left_after, v_left);
  end loop;

  -- 5. One decrement, one insert, one upsert per buyer, for everything granted.
  if array_length(v_granted_ids, 1) > 0 then
    update products p set remaining = v_left, version = p.version + 1 where p.id = p_product;
    insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at)
    select g.id, p_product, g.buyer, g.quantity, v.price_cents * g.quantity, 'held', v_expires
      from unnest(v_granted_ids, v_granted_buyers, v_granted_quantities) as g(id, buyer, quantity);
    if v.per_buyer_limit is not null then
      insert into buyer_units as b (product_id, buyer_id, units)
      select p_product, g.buyer, sum(g.quantity)::integer
        from unnest(v_granted_buyers, v_granted_quantities) as g(buyer, quantity)
       group by g.buyer order by g.buyer
      on conflict (product_id, buyer_id) do update set units = b.units + excluded.units;
    end if;
  end if;

  -- A granted row's amount and expiry follow from the locked row; a made one's are read back.
  return query
    select t.id, t.outcome, t.left_after,
           case when t.outcome in ('OK', 'INSUFFICIENT_FUNDS', 'FUNDS_UNKNOWN') then v.price_cents * t.quantity
                when v_existing ? t.id::text then (v_existing -> t.id::text ->> 'amount')::bigint
                when t.outcome = 'EXISTS' then v.price_cents * t.quantity
                else 0::bigint end,
           case when t.outcome = 'OK' then v_expires
                when v_existing ? t.id::text then (v_existing -> t.id::text ->> 'expires')::timestamptz
                when t.outcome = 'EXISTS' then v_expires end,
           v.opens_at, v.per_buyer_limit,
           case when t.outcome = 'OK' then 'held'
                when v_existing ? t.id::text then v_existing -> t.id::text ->> 'status'
                when t.outcome = 'EXISTS' then 'held' end
      from unnest(p_ids, p_quantities, v_outcomes, v_left_after) with ordinality as t(id, quantity, outcome, left_after, n)
     order by t.n;
end
$$;

-- reserve_event_sourced: the `event-sourced` strategy's reservation, one attempt in one round trip.
-- Params: p_allocation (the order id), p_product, p_buyer, p_quantity, p_spendable (as for
-- `reserve_atomic`, whose rules it judges the same way).
-- Returns one row: outcome ('OK', 'CLASH', 'SOLD_OUT', 'PRODUCT_NOT_FOUND', 'SALE_NOT_OPEN',
-- 'SALE_ENDED', 'ACCOUNT_TOO_NEW', 'LIMIT_EXCEEDED', 'INSUFFICIENT_FUNDS', 'FUNDS_UNKNOWN'), the units
-- left, the amount, the hold's expiry, the window's opening, the per-buyer limit, and what the
-- decision read: the snapshot's seq it started from and how many events it replayed after it.
-- 'CLASH': another writer appended the number this attempt read as next; nothing was written, and
-- the caller tries again with a fresh read. Raises serialization_failure (40001, nothing written)
-- when the product's terms changed between the read and the write: try again as well.
-- A repeated p_allocation raises unique_violation and changes nothing (the caller reads it back).
create or replace function reserve_event_sourced(p_allocation uuid, p_product uuid, p_buyer uuid, p_quantity integer,
                                                 p_spendable bigint)
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
         p.opens_at > now() as not_open, p.opens_at, p.per_buyer_limit, p.price_cents,
         p.accounts_before is not null and coalesce(account_created_at(p_buyer) >= p.accounts_before, true) as too_new,
         p.requires_funds,
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
  if v.too_new then
    return query select 'ACCOUNT_TOO_NEW', v.available, 0::bigint, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
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
  if v.requires_funds and (p_spendable is null or p_spendable < v.price_cents * p_quantity) then
    return query select case when p_spendable is null then 'FUNDS_UNKNOWN' else 'INSUFFICIENT_FUNDS' end,
                        v.available, v.price_cents * p_quantity, null::timestamptz, v.opens_at, v.per_buyer_limit, v.from_seq, v.replayed;
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
