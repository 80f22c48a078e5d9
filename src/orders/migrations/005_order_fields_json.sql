-- order_json's fields from values rather than from a row. A purchase writes its key's answer (the
-- order as the API shows it) guarded by the key's claim, and records the order only if that write
-- happened: one statement, whose only row lock is the key's own update (a `for update` read of the
-- key first cost every purchase a second write of the key's row). `created_at` is the
-- transaction's `now()`, which is what the order's row gets by default in the same statement.
create function order_fields_json(p_id uuid, p_status text, p_buyer uuid, p_product uuid, p_quantity integer,
                                  p_amount_cents bigint, p_expires_at timestamptz, p_created_at timestamptz)
returns jsonb language sql stable as $$
  select jsonb_build_object(
    'id', p_id,
    'status', p_status,
    'buyerId', p_buyer,
    'productId', p_product,
    'quantity', p_quantity,
    'amountCents', p_amount_cents,
    'expiresAt', to_char(p_expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'createdAt', to_char(p_created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;

create or replace function order_json(o orders) returns jsonb language sql stable as $$
  select order_fields_json(o.id, o.status, o.buyer_id, o.product_id, o.quantity, o.amount_cents, o.expires_at, o.created_at)
$$;
