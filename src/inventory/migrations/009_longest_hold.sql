-- The longest hold a product has had before its current one (0: none longer). A hold the Redis
-- gate granted is written by the order pipeline's consumer, which refuses one that lasts longer
-- than any hold the product ever had: a message can come from anyone who reaches the broker, and
-- a genuine grant made before an admin shortened the hold must still be written.
-- The longest ever is greatest(longest_hold_seconds, hold_seconds); every change of the product
-- keeps it so (src/inventory/products.service.ts).
alter table products add column longest_hold_seconds integer not null default 0;
