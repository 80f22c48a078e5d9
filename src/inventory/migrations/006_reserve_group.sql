-- reserve_group: decides a whole line of reservations of one product in one statement, one round
-- trip, one transaction (the `queue` strategy). It locks the product row once and grants in the
-- order given (the order the server received them) while stock and each buyer's limit allow; a
-- request for more than remains is refused whole, and a later, smaller one may still take what is
-- left. Then one decrement by the total granted, one insert of every granted allocation, one
-- upsert of each buyer's units. An id that already has an allocation (a retry) is answered with it
-- and takes nothing. Returns one row per request, in the order given.
create or replace function reserve_group(p_product uuid, p_ids uuid[], p_buyers uuid[], p_quantities integer[])
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
    elsif v.per_buyer_limit is not null and p_quantities[i] > v.per_buyer_limit then
      v_outcomes := array_append(v_outcomes, 'LIMIT_EXCEEDED');
    elsif p_quantities[i] > v_left then
      v_outcomes := array_append(v_outcomes, 'SOLD_OUT');
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
           case when t.outcome = 'OK' then v.price_cents * t.quantity
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
