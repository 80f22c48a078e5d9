-- An order as the API answers it, field for field as `toOrder` in orders.service.ts writes it
-- (timestamps in UTC, millisecond precision, truncated as a JavaScript Date truncates). A held
-- purchase stores its Idempotency-Key's answer with this in the same statement that records the
-- order, so the order and its answer commit together and a purchase costs one round trip less.

create function order_json(o orders) returns jsonb language sql stable as $$
  select jsonb_build_object(
    'id', o.id,
    'status', o.status,
    'buyerId', o.buyer_id,
    'productId', o.product_id,
    'quantity', o.quantity,
    'amountCents', o.amount_cents,
    'expiresAt', to_char(o.expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
    'createdAt', to_char(o.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
$$;
