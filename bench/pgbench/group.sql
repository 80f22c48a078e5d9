-- The statements one group of keyed purchases issues on the `queue` strategy's hot path, as
-- pgbench runs them: reserve the whole group (one reserve_group call, inventory), then record its
-- orders and write their Idempotency-Keys answered with them (one statement, orders; as
-- src/orders/order-records.ts writes them). Purchases/s = pgbench's tps × the group size.
-- Params (pgbench -D): product = the product's uuid, group = requests per group.
\set a random(1, 2147483647)
SELECT count(*) FROM reserve_group(:product::uuid,
  array(SELECT md5(:a || '-' || g)::uuid FROM generate_series(1, :group) g),
  array(SELECT md5('buyer' || (:a + g) % 100000)::uuid FROM generate_series(1, :group) g),
  array(SELECT 1 FROM generate_series(1, :group) g));
WITH input AS (
  SELECT md5(:a || '-' || g)::uuid AS id, md5('buyer' || (:a + g) % 100000)::uuid AS buyer_id, :product::uuid AS product_id,
         1 AS quantity, 1000::int8 AS amount_cents, now() + interval '300 seconds' AS expires_at,
         'hot-' || :a || '-' || g AS key, md5('claim' || :a || '-' || g)::uuid AS claim_id
    FROM generate_series(1, :group) g),
existing_order AS (SELECT o.* FROM orders o JOIN input i ON i.id = o.id),
key_written AS (
  INSERT INTO idempotency_keys AS k (buyer_id, key, claim_id, scope, request_hash, status_code, response, order_id)
  SELECT i.buyer_id, i.key, i.claim_id, 'purchase', 'Yq1v0vZ8JmVb3m2sFf8uKQpZC0a2Yk9pR3dW7xTn5eA', 201,
         jsonb_build_object('ok', true, 'order', order_fields_json(i.id, 'held', i.buyer_id, i.product_id, i.quantity,
           i.amount_cents, i.expires_at, now())), i.id
    FROM input i WHERE NOT EXISTS (SELECT 1 FROM existing_order e WHERE e.id = i.id)
   ORDER BY i.buyer_id, i.key
  ON CONFLICT (buyer_id, key) DO UPDATE
    SET claim_id = excluded.claim_id, scope = excluded.scope, request_hash = excluded.request_hash,
        status_code = excluded.status_code, response = excluded.response, order_id = excluded.order_id, created_at = now()
    WHERE k.created_at < now() - '24 hours'::interval
       OR (k.status_code IS NULL AND k.order_id IS NULL AND k.created_at < now() - '5 minutes'::interval)
  RETURNING k.order_id),
o AS (
  INSERT INTO orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
  SELECT i.id, i.buyer_id, i.product_id, i.quantity, i.amount_cents, 'held', i.expires_at FROM input i
   WHERE NOT EXISTS (SELECT 1 FROM existing_order e WHERE e.id = i.id)
     AND EXISTS (SELECT 1 FROM key_written w WHERE w.order_id = i.id)
   ORDER BY i.id
  RETURNING *)
SELECT count(*) FROM o;
