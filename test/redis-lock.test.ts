/**
 * The `redis-lock` strategy's own promises, beyond the conformance suite: a holder stalled past its
 * lock's TTL writes nothing (the fence in PostgreSQL, not the lock, guards the stock); a lock held
 * too long gives `CONTENTION` with `Retry-After`; a lock whose holder died expires by its TTL.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import { GateKeys } from '../src/inventory/redis/keys.js';
import { StockLocks } from '../src/inventory/redis/stock-locks.js';
import { RedisLockStrategy } from '../src/inventory/strategies/redis-lock.strategy.js';
import { startTestServer, TEST_DATABASE_URL, TEST_REDIS_URL, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant } from './support/storm.js';

const TTL_MS = 100;
let t: TestServer;
let sql: Sql;
let locks: StockLocks;
let redis: Redis;

beforeAll(async () => {
  t = await startTestServer({ ...withPipeline(), strategy: 'redis-lock', redisLockTtlMs: TTL_MS, redisLockWaitMs: 300 });
  sql = connect(databaseUrl(TEST_DATABASE_URL, `${t.config.databasePrefix}inventory`), 2, 'flashsale:redis-lock-test');
  locks = await StockLocks.open(TEST_REDIS_URL, { keyPrefix: t.config.redisKeyPrefix, ttlMs: TTL_MS, waitMs: 1_000 });
  redis = new Redis(TEST_REDIS_URL);
});
afterAll(async () => {
  await locks?.close();
  redis?.disconnect();
  await sql?.end();
  await t?.stop();
});

async function remaining(productId: string): Promise<number> {
  const [row] = await sql<{ remaining: number }[]>`select remaining from products where id = ${productId}`;
  return row?.remaining ?? -1;
}

describe('the fence', () => {
  it('keeps a holder that stalled past its lock from writing: the newer holder\'s sale stands, nothing is lost', async () => {
    const product = await t.api.createProduct({ stock: 10 });
    const [stalled, other] = await t.api.createBuyers(2);
    if (!stalled || !other) throw new Error('no buyers');
    // A holder that reads, then stalls three TTLs before it writes.
    const slow = new RedisLockStrategy(sql, locks, { afterRead: () => sleep(TTL_MS * 3) });
    const stalledAttempt = slow.reserve({ allocationId: randomUUID(), productId: product.id, buyerId: stalled.id, quantity: 1 });
    // Meanwhile its lock expires, and another buyer takes it, reads and writes.
    await sleep(TTL_MS * 1.5);
    const bought = await t.api.purchase(other.token, product.id);
    expect(bought.status).toBe(201);
    expect(await remaining(product.id)).toBe(9);
    // The stalled holder's write finds a newer fence: it writes nothing, and says to come back.
    expect(await stalledAttempt).toEqual({ ok: false, reason: 'CONTENTION', retryAfterSeconds: 1 });
    expect(await remaining(product.id)).toBe(9);
    await expectInvariant(t.api, product.id, [bought]);
  });
});

describe('the lock', () => {
  it('answers CONTENTION with Retry-After when it stays taken past the wait, and sells once its holder\'s TTL ends', async () => {
    const product = await t.api.createProduct({ stock: 5 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const key = new GateKeys(t.config.redisKeyPrefix).stockLock(product.id);
    // A holder that took the lock for 2 s and died.
    await redis.set(key, 'a-dead-holder', 'PX', 2_000);
    const refused = await t.api.purchase(buyer.token, product.id);
    expect(refused.status).toBe(409);
    expect(refused.body['code']).toBe('CONTENTION');
    expect(refused.headers['retry-after']).toBeDefined();
    expect(await remaining(product.id)).toBe(5);
    // Released by its TTL: the next purchase sells.
    await redis.set(key, 'a-dead-holder', 'PX', 50);
    await sleep(100);
    expect((await t.api.purchase(buyer.token, product.id)).status).toBe(201);
    // Compare-and-delete: the buyer's release left nobody's lock behind, and releases no one else's.
    expect(await redis.exists(key)).toBe(0);
    await redis.set(key, 'someone-else', 'PX', 5_000);
    expect(await locks.release(product.id, 'not-their-token')).toBe(false);
    expect(await redis.get(key)).toBe('someone-else');
    await redis.del(key);
  });
});
