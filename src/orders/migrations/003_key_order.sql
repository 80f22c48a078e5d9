-- The order a claimed key's request has recorded while its answer is still to come. An instant
-- purchase records its order, then pays, then stores its answer: if its process dies in between,
-- the claim goes stale with an order behind it. Taking such a claim over would buy (and charge)
-- a second time; the key is answered from its order instead.
alter table idempotency_keys add column order_id uuid;
