-- The statements one purchase issues on the `atomic` strategy's hot path (no idempotency key,
-- no per-buyer limit), as pgbench runs them: the reservation (one round trip into
-- reserve_atomic), then the order row. The ids are made server-side from random numbers so
-- pgbench spends no extra round trip on them.
-- Params (pgbench -D): product = the product's uuid.
\set a random(1, 2147483647)
\set b random(1, 2147483647)
\set buyer random(1, 100000)
SELECT * FROM reserve_atomic(md5(:a || '-' || :b)::uuid, :product::uuid, md5('buyer' || :buyer)::uuid, 1);
INSERT INTO orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
VALUES (md5(:a || '-' || :b)::uuid, md5('buyer' || :buyer)::uuid, :product::uuid, 1, 1000, 'held',
        now() + interval '300 seconds')
RETURNING *;
