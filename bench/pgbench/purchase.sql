-- The statements one purchase issues on the `atomic` strategy's hot path, in order, as pgbench
-- runs them: claim the Idempotency-Key (orders), reserve (one round trip into reserve_atomic,
-- inventory), record the order (orders), store the answer under the key (orders). Ids are made
-- server-side from random numbers so pgbench spends no extra round trip on them.
-- Params (pgbench -D): product = the product's uuid.
\set a random(1, 2147483647)
\set b random(1, 2147483647)
\set buyer random(1, 100000)
INSERT INTO idempotency_keys AS k (buyer_id, key, scope, request_hash)
VALUES (md5('buyer' || :buyer)::uuid, 'hot-' || :a || '-' || :b, 'purchase', 'Yq1v0vZ8JmVb3m2sFf8uKQpZC0a2Yk9pR3dW7xTn5eA')
ON CONFLICT (buyer_id, key) DO UPDATE SET scope = excluded.scope, request_hash = excluded.request_hash
  WHERE k.created_at < now() - interval '24 hours'
RETURNING true AS claimed;
SELECT * FROM reserve_atomic(md5(:a || '-' || :b)::uuid, :product::uuid, md5('buyer' || :buyer)::uuid, 1);
INSERT INTO orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
VALUES (md5(:a || '-' || :b)::uuid, md5('buyer' || :buyer)::uuid, :product::uuid, 1, 1000, 'held',
        now() + interval '300 seconds')
RETURNING *;
UPDATE idempotency_keys
   SET status_code = 201,
       response = jsonb_build_object('order', jsonb_build_object('id', md5(:a || '-' || :b)::uuid, 'status', 'held',
                  'buyerId', md5('buyer' || :buyer)::uuid, 'productId', :product::uuid, 'quantity', 1,
                  'amountCents', 1000, 'expiresAt', now(), 'createdAt', now()))
 WHERE buyer_id = md5('buyer' || :buyer)::uuid AND key = 'hot-' || :a || '-' || :b AND status_code IS NULL;
