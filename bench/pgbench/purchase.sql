-- The statements one purchase issues on the `atomic` strategy's hot path, in order, as pgbench
-- runs them: claim the Idempotency-Key (orders: the server's batched claim statement with a batch
-- of one, since pgbench cannot gather the claims of a moment as the server does), reserve (one
-- round trip into reserve_atomic, inventory; the server sends it side by side with the claim),
-- record the order and store the answer under the key in one statement, if the key still carries
-- this request's claim (orders). Ids are made server-side from random numbers so pgbench spends no
-- extra round trip on them.
-- Params (pgbench -D): product = the product's uuid.
\set a random(1, 2147483647)
\set b random(1, 2147483647)
\set buyer random(1, 100000)
INSERT INTO idempotency_keys (buyer_id, key, claim_id, scope, request_hash, status_code, response)
SELECT buyer_id, key, claim_id, scope, request_hash, status_code, response
  FROM jsonb_to_recordset(jsonb_build_array(jsonb_build_object(
         'buyer_id', md5('buyer' || :buyer)::uuid, 'key', 'hot-' || :a || '-' || :b,
         'claim_id', md5('claim' || :a || '-' || :b)::uuid, 'scope', 'purchase',
         'request_hash', 'Yq1v0vZ8JmVb3m2sFf8uKQpZC0a2Yk9pR3dW7xTn5eA', 'status_code', NULL, 'response', NULL)))
    AS t(buyer_id uuid, key text, claim_id uuid, scope text, request_hash text, status_code integer, response jsonb)
 ORDER BY buyer_id, key
ON CONFLICT (buyer_id, key) DO NOTHING
RETURNING buyer_id, key;
SELECT * FROM reserve_atomic(md5(:a || '-' || :b)::uuid, :product::uuid, md5('buyer' || :buyer)::uuid, 1);
WITH answered AS (
  UPDATE idempotency_keys
     SET status_code = 201, order_id = md5(:a || '-' || :b)::uuid,
         response = jsonb_build_object('order', order_fields_json(md5(:a || '-' || :b)::uuid, 'held',
           md5('buyer' || :buyer)::uuid, :product::uuid, 1, 1000, now() + interval '300 seconds', now()))
   WHERE buyer_id = md5('buyer' || :buyer)::uuid AND key = 'hot-' || :a || '-' || :b
     AND claim_id = md5('claim' || :a || '-' || :b)::uuid AND status_code IS NULL
  RETURNING 1),
o AS (
  INSERT INTO orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
  SELECT md5(:a || '-' || :b)::uuid, md5('buyer' || :buyer)::uuid, :product::uuid, 1, 1000, 'held',
         now() + interval '300 seconds'
   WHERE EXISTS (SELECT 1 FROM answered)
  RETURNING *)
SELECT * FROM o;
