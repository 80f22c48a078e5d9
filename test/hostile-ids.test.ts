/**
 * Ids in every spelling a client can send: one product, one order, one scope whatever the case.
 * A UUID is read case-insensitively at the edge and lower-cased there; every layer below that keys
 * by an id refuses any other spelling; braces, `urn:uuid:` and unhyphenated forms are refused. The
 * audit names a hold PostgreSQL has that the Redis gate does not count (`GATE_DRIFT`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StrategyName } from '../src/inventory/strategy-names.js';
import type { Answer } from './support/api.js';
import { settledSnapshot, snapshotStores } from './support/snapshot.js';
import { startTestServer, TEST_REDIS_URL, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant } from './support/storm.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer(withPipeline());
});
afterAll(async () => {
  await t?.stop();
});

/** The spellings of one id a client may send: as minted, upper case, and two mixed. */
function spellings(id: string): string[] {
  const alternate = (start: number) => [...id].map((c, i) => ((i + start) % 2 === 0 ? c.toUpperCase() : c)).join('');
  return [id, id.toUpperCase(), alternate(0), alternate(1)];
}

/** A purchase retried after every `503` (the gate rebuilding, a store restarting), as a client does. */
async function purchaseAsAClient(token: string, productId: string): Promise<Answer> {
  for (let attempt = 0; ; attempt += 1) {
    const answer = await t.api.purchase(token, productId);
    if (answer.status !== 503 || attempt >= 20) return answer;
    await sleep(100);
  }
}

const STRATEGIES: readonly StrategyName[] = ['atomic', 'pessimistic', 'optimistic', 'queue', 'event-sourced', 'redis-lock', 'redis-lua'];

describe('a product id in any case is one product', () => {
  for (const strategy of STRATEGIES) {
    it(`sells 3 units once on ${strategy} to four buyers trying four spellings each`, async () => {
      const product = await t.api.createProduct({ stock: 3, perBuyerLimit: 1, strategy });
      const buyers = await t.api.createBuyers(4);
      const byBuyer = await Promise.all(
        buyers.map(async (buyer) => {
          const mine: Answer[] = [];
          for (const spelling of spellings(product.id)) mine.push(await purchaseAsAClient(buyer.token, spelling));
          return mine;
        }),
      );
      const answers = byBuyer.flat();
      // Three units, one per buyer whatever the spelling: no buyer over the limit, nothing oversold.
      expect(answers.filter((answer) => answer.status === 201).length).toBe(3);
      for (const mine of byBuyer) expect(mine.filter((answer) => answer.status === 201).length).toBeLessThanOrEqual(1);
      for (const answer of answers) {
        if (answer.status === 201) expect((answer.body['order'] as { productId: string }).productId).toBe(product.id);
        else expect(['LIMIT_EXCEEDED', 'SOLD_OUT']).toContain(answer.body['code']);
      }
      await expectInvariant(t.api, product.id, answers);
    });
  }

  it('answers the product in its one spelling whatever spelling is asked for', async () => {
    const product = await t.api.createProduct({ stock: 1 });
    for (const spelling of spellings(product.id)) {
      const answer = await t.api.call('GET', `/v1/products/${spelling}`);
      expect(answer.status).toBe(200);
      expect(answer.body['id']).toBe(product.id);
    }
    const audit = await t.api.admin<{ products: { productId: string }[] }>('GET', `/v1/admin/audit?productId=${product.id.toUpperCase()}`);
    expect(audit.status).toBe(200);
    expect(audit.body.products[0]?.productId).toBe(product.id);
  });
});

describe('an order id in any case is one order', () => {
  it('pays once, and one Idempotency-Key scope covers every spelling of the order id', async () => {
    const product = await t.api.createProduct({ stock: 5, priceCents: 100 });
    const [buyer] = await t.api.createBuyers(1, 1_000);
    if (!buyer) throw new Error('no buyer');
    const held = await t.api.purchase(buyer.token, product.id);
    expect(held.status).toBe(201);
    const orderId = (held.body['order'] as { id: string }).id;
    const [first, ...others] = spellings(orderId).reverse();
    const key = { 'idempotency-key': `pay-${orderId}` };
    const paid = await t.api.call('POST', `/v1/orders/${first}/pay`, { token: buyer.token, headers: key });
    expect(paid.status).toBe(200);
    expect((paid.body['order'] as { id: string }).id).toBe(orderId);
    for (const spelling of others) {
      const again = await t.api.call('POST', `/v1/orders/${spelling}/pay`, { token: buyer.token, headers: key });
      expect(again.status).toBe(200);
      expect(again.headers['idempotent-replayed']).toBe('true');
    }
    const me = await t.api.call<{ balanceCents: number }>('GET', '/v1/me', { token: buyer.token });
    expect(me.body.balanceCents).toBe(900);
    const got = await t.api.call('GET', `/v1/orders/${orderId.toUpperCase()}`, { token: buyer.token });
    expect((got.body['order'] as { status: string }).status).toBe('paid');
  });
});

describe('other spellings of a UUID are refused and change nothing', () => {
  const forms = (id: string): Record<string, string> => ({
    braces: `{${id}}`,
    urn: `urn:uuid:${id}`,
    'no hyphens': id.replaceAll('-', ''),
    'a space around it': ` ${id}`,
  });

  it('refuses them as a product id to buy, as a path id and in the audit query', async () => {
    const product = await t.api.createProduct({ stock: 5 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    // The storms above may still be writing orders and relaying their events on a loaded machine.
    const before = await settledSnapshot(t.server.system.stores.databases);
    for (const [name, form] of Object.entries(forms(product.id))) {
      const bought = await t.api.purchase(buyer.token, form);
      expect(bought.status, name).toBe(400);
      expect(bought.body['code'], name).toBe('VALIDATION_FAILED');
      const read = await t.api.call('GET', `/v1/products/${encodeURIComponent(form)}`);
      expect(read.status, name).toBe(400);
      const audit = await t.api.admin('GET', `/v1/admin/audit?productId=${encodeURIComponent(form)}`);
      expect(audit.status, name).toBe(400);
    }
    expect(await snapshotStores(t.server.system.stores.databases)).toEqual(before);
  });
});

describe('below the edge, only the canonical spelling is accepted', () => {
  it('inventory, the gate keys and the placed orders refuse an upper-case id', async () => {
    const product = await t.api.createProduct({ stock: 5, strategy: 'redis-lua' });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const { system } = t.server;
    const upper = product.id.toUpperCase();
    await expect(
      system.inventory.reserve({ allocationId: '01900000-0000-7000-8000-000000000001', productId: upper, buyerId: buyer.id, quantity: 1 }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(
      system.inventory.reserve({ allocationId: '01900000-0000-7000-8000-00000000000A', productId: product.id, buyerId: buyer.id, quantity: 1 }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(() => system.pipeline?.gate.keys.product(upper)).toThrow(/lower-case UUID/);
    await expect(
      system.orders.purchase(buyer.id.toUpperCase(), { productId: product.id, quantity: 1 }),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await expect(
      system.orders.recordPlaced([
        {
          orderId: '01900000-0000-7000-8000-000000000002',
          productId: upper,
          buyerId: buyer.id,
          quantity: 1,
          amountCents: 1000,
          expiresAt: new Date(Date.now() + 60_000).toISOString(),
          placedAt: new Date().toISOString(),
        },
      ]),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    const audit = await t.api.audit(product.id);
    expect(audit.violations).toEqual([]);
    expect(audit.products[0]?.remaining).toBe(5);
  });
});

describe('the audit', () => {
  it('reports GATE_DRIFT for a hold PostgreSQL has and the gate does not count', async () => {
    const product = await t.api.createProduct({ stock: 5, strategy: 'redis-lua' });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const bought = await t.api.purchase(buyer.token, product.id);
    expect(bought.status).toBe(201);
    const orderId = (bought.body['order'] as { id: string }).id;
    expect((await t.api.audit(product.id)).violations).toEqual([]);
    const gate = t.server.system.pipeline?.gate;
    if (!gate) throw new Error('no gate');
    const redis = new Redis(TEST_REDIS_URL);
    try {
      await redis.hdel(gate.keys.product(product.id).holds, orderId);
    } finally {
      redis.disconnect();
    }
    const audit = await t.api.audit(product.id);
    expect(audit.violations.map((violation) => violation.kind)).toContain('GATE_DRIFT');
    expect(audit.violations.find((violation) => violation.kind === 'GATE_DRIFT')?.detail).toContain(orderId);
  });
});
