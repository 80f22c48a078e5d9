/**
 * The Redis gate keeps its own state whole: a redis-lua product that loses any one of its keys
 * (what an evicting Redis does) is cleared and rebuilt from PostgreSQL, with buyers asking or
 * without, and then sells exactly what is left (the buyers' counts and holds restored); and stock
 * changes that race each other under a storm add up in PostgreSQL and in the gate alike.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RedisGate } from '../src/inventory/redis/gate.js';
import type { Answer } from './support/api.js';
import { gateOf, startTestServer, TEST_REDIS_URL, withPipeline, type TestServer } from './support/server.js';
import { holdProductRow } from './support/row-lock.js';
import { expectInvariant, storm } from './support/storm.js';

const CONFIRM_MS = 300;
const RECONCILE_MS = 500;
/** Far beyond CONFIRM_MS + RECONCILE_MS: a product still not whole by then was never going to be. */
const GIVE_UP_MS = 15_000;

let t: TestServer;
let redis: Redis;

beforeAll(async () => {
  t = await startTestServer({ ...withPipeline(), confirmTimeoutMs: CONFIRM_MS, reconcileIntervalMs: RECONCILE_MS });
  redis = new Redis(TEST_REDIS_URL);
});
afterAll(async () => {
  redis?.disconnect();
  await t?.stop();
});

const gate = (): RedisGate => gateOf(t);

/** Resolves with how long `check` took to hold; throws after GIVE_UP_MS. */
async function until(check: () => Promise<boolean>, what: string): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > GIVE_UP_MS) throw new Error(`${what}: not within ${GIVE_UP_MS} ms`);
    await sleep(25);
  }
  return Date.now() - start;
}

/** Whether every key of the product is in Redis (read from Redis itself, as an operator would). */
async function whole(productId: string): Promise<boolean> {
  const keys = gate().keys.product(productId);
  return (await redis.exists(keys.terms, keys.buyers, keys.holds, keys.expiries, keys.unchecked)) === 5;
}

/** A purchase retried after every `503` (the gate rebuilding), as a client does. */
async function purchaseAsAClient(token: string, productId: string, quantity: number): Promise<Answer> {
  for (let attempt = 0; ; attempt += 1) {
    const answer = await t.api.purchase(token, productId, quantity);
    if (answer.status !== 503 || attempt >= 200) return answer;
    await sleep(50);
  }
}

/** Waits until the consumer has written every order placed so far (the audit waits for the pipeline). */
async function settled(productId: string): Promise<void> {
  await until(async () => (await t.api.audit(productId)).ok, 'the audit clean');
}

const KEYS = ['terms', 'buyers', 'holds', 'expiries', 'unchecked'] as const;

describe('a redis-lua product that loses one of its gate keys', () => {
  for (const lost of KEYS) {
    it(`is rebuilt by the reconciler after losing its ${lost} key with nobody buying, and then sells exactly what is left`, async () => {
      const product = await t.api.createProduct({ stock: 6, perBuyerLimit: 2, strategy: 'redis-lua' });
      const [a, b, c] = await t.api.createBuyers(3);
      if (!a || !b || !c) throw new Error('no buyers');
      const first = await t.api.purchase(a.token, product.id, 2);
      expect(first.status).toBe(201);
      await settled(product.id);

      await redis.del(gate().keys.product(product.id)[lost]);
      // Nobody buys: the reconciler finds the product not whole and starts its rebuild.
      await until(() => whole(product.id), `rebuilt after losing ${lost}`);

      // Exactly what was there: a holds its limit, four units are left for the others.
      const answers = [
        await t.api.purchase(a.token, product.id, 1),
        await t.api.purchase(b.token, product.id, 2),
        await t.api.purchase(c.token, product.id, 2),
        await t.api.purchase(c.token, product.id, 1),
      ];
      expect(answers.map((answer) => answer.body['code'] ?? answer.status)).toEqual(['LIMIT_EXCEEDED', 201, 201, 'SOLD_OUT']);
      await expectInvariant(t.api, product.id, [first, ...answers]);
    });
  }

  it('sells again to buyers who keep asking while every key is lost in turn, no unit twice, no buyer over the limit', async () => {
    const product = await t.api.createProduct({ stock: 20, perBuyerLimit: 2, strategy: 'redis-lua' });
    const buyers = await t.api.createBuyers(12);
    const answers: Answer[] = [];
    for (const [index, lost] of KEYS.entries()) {
      const wave = buyers.slice(index * 2, index * 2 + 4);
      answers.push(...(await storm(wave.length, (i) => purchaseAsAClient(wave[i]?.token ?? '', product.id, 1))));
      await settled(product.id);
      await redis.del(gate().keys.product(product.id)[lost]);
    }
    // The last wave asks until the gate is whole again.
    answers.push(...(await storm(buyers.length, (i) => purchaseAsAClient(buyers[i]?.token ?? '', product.id, 2))));
    expect(answers.filter((answer) => answer.status >= 500)).toEqual([]);
    const sold = answers.filter((answer) => answer.status === 201).reduce((units, answer) => units + ((answer.body['order'] as { quantity: number }).quantity), 0);
    expect(sold).toBe(20);
    await settled(product.id);
    await expectInvariant(t.api, product.id, answers);
  });
});

describe('stock changes that race each other', () => {
  it('never let the gate keep units PostgreSQL took away: two removals read the same stock while orders wait in the queue', async () => {
    const pipeline = t.server.system.pipeline;
    if (!pipeline) throw new Error('no pipeline');
    const product = await t.api.createProduct({ stock: 20, strategy: 'redis-lua' });
    const buyers = await t.api.createBuyers(12);
    // Twelve units held in the gate whose orders wait in the queue: PostgreSQL still counts 20 free.
    await pipeline.consumer?.stop();
    let purchases: Answer[] = [];
    try {
      purchases = await storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id, 1));
      expect(purchases.map((answer) => answer.status)).toEqual(buyers.map(() => 201));
      // Both removals of 5 read the stock before either is written (the row held meanwhile).
      const row = await holdProductRow(t.server.system.stores.databases.inventory, product.id);
      const removals = [1, 2].map(() => t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: -5 }));
      await sleep(300);
      await row.release();
      const answers = await Promise.all(removals);
      // Eight units were free: one removal fits, the other does not.
      expect(answers.map((answer) => answer.status).sort()).toEqual([200, 409]);
    } finally {
      pipeline.consumer?.start();
    }
    await settled(product.id);
    expect((await gate().stockFigures(product.id))?.stocked).toBe(15);
    expect((await t.api.audit(product.id)).products[0]?.stocked).toBe(15);
    await expectInvariant(t.api, product.id, purchases);
  });

  it('add up in PostgreSQL and in the gate: 20 concurrent addStock changes, positive and negative', async () => {
    const product = await t.api.createProduct({ stock: 100, strategy: 'redis-lua' });
    const buyers = await t.api.createBuyers(120);
    // Under a storm, as a restock or a withdrawal would come during a drop.
    const changes = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 7 : -5));
    const [purchases, patches] = await Promise.all([
      storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id, 1)),
      storm(changes.length, (i) => t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: changes[i] })),
    ]);
    for (const patch of patches) expect([200, 409]).toContain(patch.status);
    const applied = patches.reduce((sum, patch, i) => (patch.status === 200 ? sum + (changes[i] ?? 0) : sum), 0);
    await settled(product.id);
    const audit = await t.api.audit(product.id);
    expect(audit.products[0]?.stocked).toBe(100 + applied);
    // The gate counts the same stock (the audit's GATE_MISMATCH compares it too).
    expect((await gate().stockFigures(product.id))?.stocked).toBe(100 + applied);
    await expectInvariant(t.api, product.id, purchases);
  });

  it('applies every term of a sync whose stock the gate refuses, counts the refusal and reports the drift', async () => {
    const product = await t.api.createProduct({ stock: 3, strategy: 'redis-lua', priceCents: 100 });
    // A drift made by hand: the gate believes 5 more units were stocked, and none is free.
    const terms = gate().keys.product(product.id).terms;
    await redis.hincrby(terms, 'remaining', -3);
    await redis.hincrby(terms, 'stocked', 5);
    const strategy = t.server.system.strategies.get('redis-lua') as unknown as { syncsRefused: number };
    const refusedBefore = strategy.syncsRefused;
    // PostgreSQL: 4 stocked. The gate would have to take 4 units it does not have free.
    const patched = await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { priceCents: 250, addStock: 1 });
    expect(patched.status).toBe(200);
    // The price reached the gate although its stock was refused there.
    expect(await redis.hget(terms, 'price')).toBe('250');
    expect(strategy.syncsRefused).toBeGreaterThan(refusedBefore);
    const scrape = async (): Promise<string> => String((await t.api.call('GET', '/metrics')).body);
    expect(await scrape()).toMatch(/^flashsale_gate_syncs_refused_total [1-9]/m);
    await until(async () => /^flashsale_gate_stock_drift_units [1-9]/m.test(await scrape()), 'the drift in /metrics');
    const audit = await t.api.audit(product.id);
    expect(audit.violations.map((violation) => violation.kind)).toContain('GATE_MISMATCH');
  });
});
