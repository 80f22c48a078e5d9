-- orders' stored functions as they are live: the current `create or replace function` text of
-- every function orders' migrations (migrations/NNN_*.sql) define, in one place to read.
-- The migrations stay append-only, so a function redefined by a later migration is read here, not
-- pieced together from them. test/sql-functions.test.ts fails when this file and a freshly
-- migrated database disagree: a migration that changes a function changes this file too.
-- The server never runs this file; the migrations are what build a database.

-- order_fields_json: an order as the API answers it, field for field as `toOrder` in
-- orders.service.ts writes it (timestamps in UTC, millisecond precision, truncated as a JavaScript
-- Date truncates), from values rather than from a row.
-- Params: the order's id, status, buyer, product, quantity, amount, expiry and creation time.
-- Why from values: a purchase writes its key's answer (this) guarded by the key's claim and
-- records the order only if that write happened, in one statement whose only row lock is the
-- key's own update; the order's row does not exist yet when the answer is built. `p_created_at`
-- is the transaction's `now()`, which is what the order's row gets by default in that statement.
create or replace function order_fields_json(p_id uuid, p_status text, p_buyer uuid, p_product uuid, p_quantity integer,
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

-- order_json: the same, from an order's row (a stale claim whose request recorded an order is
-- answered from that order).
create or replace function order_json(o orders) returns jsonb language sql stable as $$
  select order_fields_json(o.id, o.status, o.buyer_id, o.product_id, o.quantity, o.amount_cents, o.expires_at, o.created_at)
$$;
