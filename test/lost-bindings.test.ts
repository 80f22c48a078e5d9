/**
 * One `Idempotency-Key`, one order, even when the Redis gate has forgotten the key: a Redis that
 * restarted empty (every key gone, its `bindings-since` mark too) or that evicted one binding
 * alone. The key's row in PostgreSQL is what still knows; no second order is recorded for a key,
 * nothing is charged twice, and the key's own request still gets its order back.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisGate } from '../src/inventory/redis/gate.js';
import type { Answer } from './support/api.js';
import { gateOf, startTestServer, TEST_REDIS_URL, withPipeline, type TestServer } from './support/server.js';
import { waitFor } from './support/drill.js';
import { expectInvariant } from './support/storm.js';

let t: TestServer;
let redis: Redis;

beforeAll(async () => {
  t = await startTestServer({ ...withPipeline(), confirmTimeoutMs: 300, reconcileIntervalMs: 500 });
  redis = new Redis(TEST_REDIS_URL);
});
afterAll(async () => {
  redis?.disconnect();
  await t?.stop();
});

const gate = (): RedisGate => gateOf(t);

/** Waits until the consumer has written every order placed so far. */
async function settled(productId: string): Promise<void> {
  await waitFor('the audit clean', async () => (await t.api.audit(productId)).ok, 15_000, 25);
}

/**
 * A Redis that never lost anything (its mark says it has held every binding since the epoch), so
 * only a binding evicted alone is missing: a case the gate cannot see.
 */
async function neverRestarted(): Promise<void> {
  await redis.set(gate().keys.bindingsSince(), '0');
  await gate().bindingsSince(true);
}

/** Deletes every key of this server's gate, as a Redis that restarted with nothing kept. */
async function restartedEmpty(): Promise<void> {
  const names = await redis.keys(gate().keys.everything());
  if (names.length > 0) await redis.del(...names);
}

interface Buyer {
  readonly id: string;
  readonly token: string;
}

/** One keyed request, retried after every `503` (the gate rebuilding), as a client does. */
async function buy(buyer: Buyer, productId: string, key: string, pay = false): Promise<Answer> {
  for (let attempt = 0; ; attempt += 1) {
    const answer = await t.api.call('POST', '/v1/purchases', {
      token: buyer.token,
      body: { productId, quantity: 1, ...(pay ? { pay: true } : {}) },
      headers: { 'idempotency-key': key },
    });
    if (answer.status !== 503 || attempt >= 200) return answer;
    await sleep(50);
  }
}

const ordersOf = async (productId: string): Promise<{ id: string; buyerId: string }[]> =>
  (await t.api.admin<{ orders: { id: string; buyerId: string }[] }>('GET', `/v1/admin/products/${productId}/orders?limit=10`)).body.orders;
const balanceOf = async (buyer: Buyer): Promise<number> =>
  (await t.api.call<{ balanceCents: number }>('GET', '/v1/me', { token: buyer.token })).body.balanceCents;
const orderIdOf = (answer: Answer): string => (answer.body['order'] as { id: string }).id;

interface Bought {
  readonly a: string;
  readonly b: string;
  readonly me: Buyer;
  readonly key: string;
  /** The key's first request: a unit of product a (paid at once with `pay`), its order written. */
  readonly first: Answer;
}

/** Two redis-lua products and a buyer whose key bought one unit of the first. */
async function boughtUnderAKey(pay = false): Promise<Bought> {
  const a = (await t.api.createProduct({ stock: 5, priceCents: 1_000, strategy: 'redis-lua' })).id;
  const b = (await t.api.createProduct({ stock: 5, priceCents: 1_000, strategy: 'redis-lua' })).id;
  const [me] = await t.api.createBuyers(1, 10_000);
  if (!me) throw new Error('no buyer');
  const key = randomUUID();
  const first = await buy(me, a, key, pay);
  expect(first.status).toBe(201);
  await settled(a);
  return { a, b, me, key, first };
}

describe('a key whose binding the gate lost', () => {
  it('after Redis restarted empty, a hold on a second product under the key is refused 422 and changes nothing', async () => {
    const { a, b, me, key, first } = await boughtUnderAKey();

    await restartedEmpty();
    const other = await buy(me, b, key);
    expect(other.status, JSON.stringify(other.body)).toBe(422);
    expect(other.body['code']).toBe('IDEMPOTENCY_KEY_REUSED');
    const retry = await buy(me, a, key);
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(orderIdOf(retry)).toBe(orderIdOf(first));

    await settled(a);
    await settled(b);
    expect(await ordersOf(a)).toHaveLength(1);
    expect(await ordersOf(b)).toEqual([]);
    await expectInvariant(t.api, a, [first, retry]);
    await expectInvariant(t.api, b, [other]);
    expect((await t.api.audit(b)).products[0]).toMatchObject({ held: 0, paid: 0, remaining: 5 });
  });

  it('after one binding was evicted alone, the second product grant is never recorded, its unit comes back, and the key still answers its own request', async () => {
    const { a, b, me, key, first } = await boughtUnderAKey();

    await neverRestarted();
    await redis.del(gate().keys.keyBinding(me.id, key));
    // Redis cannot tell this from a new key; PostgreSQL refuses the order when it arrives.
    const other = await buy(me, b, key);
    await settled(b);
    expect(await ordersOf(b)).toEqual([]);
    expect((await t.api.audit(b)).products[0]).toMatchObject({ held: 0, paid: 0, remaining: 5 });
    expect(other.status, JSON.stringify(other.body)).toBe(201);
    const pay = await t.api.call('POST', `/v1/orders/${orderIdOf(other)}/pay`, { token: me.token, headers: { 'idempotency-key': randomUUID() } });
    expect(pay.body['code'], JSON.stringify(pay.body)).toBe('HOLD_EXPIRED');

    // The gate now binds the key to the other request; PostgreSQL's row answers this one.
    const retry = await buy(me, a, key);
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(orderIdOf(retry)).toBe(orderIdOf(first));
    expect(await ordersOf(a)).toHaveLength(1);
    expect(await balanceOf(me)).toBe(10_000);
  });

  it('after one binding was evicted alone, an instant purchase on a second product is refused 422 and charges nothing', async () => {
    const { a, b, me, key, first } = await boughtUnderAKey(true);

    await neverRestarted();
    await redis.del(gate().keys.keyBinding(me.id, key));
    const other = await buy(me, b, key, true);
    expect(other.status, JSON.stringify(other.body)).toBe(422);
    expect(other.body['code']).toBe('IDEMPOTENCY_KEY_REUSED');
    await settled(b);
    expect(await ordersOf(b)).toEqual([]);
    expect(await balanceOf(me)).toBe(10_000 - 1_000);
    expect((await t.api.audit(b)).products[0]).toMatchObject({ held: 0, paid: 0, remaining: 5 });
    await expectInvariant(t.api, a, [first]);
  });
});
