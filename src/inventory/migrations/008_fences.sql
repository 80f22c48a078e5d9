-- The `redis-lock` strategy's fencing tokens: every holder of a product's Redis lock takes the next
-- number of this sequence and writes it on the product row before it reads; its write is
-- predicated on the row still carrying it. A holder whose lock expired (a pause, a Redis restart)
-- finds a newer number there and writes nothing. A sequence, so no Redis restart can reset it.
create sequence stock_fence;
alter table products add column fence bigint not null default 0;
