-- The statements one keyed purchase issues on the `atomic` strategy's hot path, in order, as
-- pgbench runs them: reserve (one round trip into reserve_atomic, inventory), then record the
-- order and write its Idempotency-Key answered with it, in one statement (orders; the order only
-- if the key was written, and neither if an order already has the id). Ids are made server-side
-- from random numbers so pgbench spends no extra round trip on them.
-- Params (pgbench -D): product = the product's uuid.
\set a random(1, 2147483647)
\set b random(1, 2147483647)
\set buyer random(1, 100000)
SELECT * FROM reserve_atomic(md5(:a || '-' || :b)::uuid, :product::uuid, md5('buyer' || :buyer)::uuid, 1);
WITH existing_order AS (SELECT * FROM orders WHERE id = md5(:a || '-' || :b)::uuid),
key_written AS (
  INSERT INTO idempotency_keys AS k (buyer_id, key, claim_id, scope, request_hash, status_code, response, order_id)
  SELECT md5('buyer' || :buyer)::uuid, 'hot-' || :a || '-' || :b, md5('claim' || :a || '-' || :b)::uuid, 'purchase',
         'Yq1v0vZ8JmVb3m2sFf8uKQpZC0a2Yk9pR3dW7xTn5eA', 201,
         jsonb_build_object('ok', true, 'order', order_fields_json(md5(:a || '-' || :b)::uuid, 'held',
           md5('buyer' || :buyer)::uuid, :product::uuid, 1, 1000, now() + interval '300 seconds', now())),
         md5(:a || '-' || :b)::uuid
   WHERE NOT EXISTS (SELECT 1 FROM existing_order)
  ON CONFLICT (buyer_id, key) DO UPDATE
    SET claim_id = excluded.claim_id, scope = excluded.scope, request_hash = excluded.request_hash,
        status_code = excluded.status_code, response = excluded.response, order_id = excluded.order_id, created_at = now()
    WHERE k.created_at < now() - '24 hours'::interval
       OR (k.status_code IS NULL AND k.order_id IS NULL AND k.created_at < now() - '5 minutes'::interval)
  RETURNING 1),
o AS (
  INSERT INTO orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
  SELECT md5(:a || '-' || :b)::uuid, md5('buyer' || :buyer)::uuid, :product::uuid, 1, 1000, 'held',
         now() + interval '300 seconds'
   WHERE NOT EXISTS (SELECT 1 FROM existing_order) AND EXISTS (SELECT 1 FROM key_written)
  RETURNING *)
SELECT *, true AS recorded FROM o
UNION ALL
SELECT *, false AS recorded FROM existing_order;
