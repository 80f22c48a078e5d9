/**
 * A product's two optional rules against farmed accounts, judged by every strategy in its own
 * reservation step, the Redis gate included: `accountsCreatedBefore` (`403 ACCOUNT_TOO_NEW`, kept
 * under the `Idempotency-Key`) and `requiresFunds` (`402 INSUFFICIENT_FUNDS` at reserve, never kept,
 * so a buyer who tops up retries with the same key). A refused buyer holds nothing.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StrategyName } from '../src/inventory/strategy-names.js';
import { startTestServer, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant } from './support/storm.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer(withPipeline());
});
afterAll(async () => {
  await t?.stop();
});

const STRATEGIES: readonly StrategyName[] = ['naive', 'pessimistic', 'optimistic', 'atomic', 'queue', 'event-sourced', 'redis-lock', 'redis-lua'];
const PRICE = 1_000;

async function heldUnits(productId: string): Promise<number> {
  const stats = await t.api.admin<{ held: number }>('GET', `/v1/admin/products/${productId}/stats`);
  return stats.body.held;
}

describe('accounts created before a moment', () => {
  for (const strategy of STRATEGIES) {
    it(`sells only to accounts older than the product admits on ${strategy}`, async () => {
      const [old] = await t.api.createBuyers(1);
      await sleep(5);
      const product = await t.api.createProduct({ stock: 5, strategy, accountsCreatedBefore: new Date().toISOString() });
      await sleep(5);
      const [young] = await t.api.createBuyers(1);
      if (!old || !young) throw new Error('no buyers');
      const key = { 'idempotency-key': randomUUID() };
      const refused = await t.api.purchase(young.token, product.id, 1, key);
      expect(refused.status).toBe(403);
      expect(refused.body['code']).toBe('ACCOUNT_TOO_NEW');
      // Definitive: kept under the key.
      const again = await t.api.purchase(young.token, product.id, 1, key);
      expect(again.status).toBe(403);
      expect(again.headers['idempotent-replayed']).toBe('true');
      const bought = await t.api.purchase(old.token, product.id);
      expect(bought.status).toBe(201);
      expect(await heldUnits(product.id)).toBe(1);
      await expectInvariant(t.api, product.id, [bought]);
    });
  }

  it('applies a rule an admin sets on a product already on sale (the Redis gate too)', async () => {
    const product = await t.api.createProduct({ stock: 5, strategy: 'redis-lua' });
    const [before] = await t.api.createBuyers(1);
    if (!before) throw new Error('no buyer');
    await sleep(5);
    const changed = await t.api.admin<{ accountsCreatedBefore: string }>('PATCH', `/v1/admin/products/${product.id}`, {
      accountsCreatedBefore: new Date(Date.now() - 1).toISOString(),
    });
    expect(changed.status).toBe(200);
    expect(changed.body.accountsCreatedBefore).toEqual(expect.any(String));
    await sleep(5);
    const [after] = await t.api.createBuyers(1);
    if (!after) throw new Error('no buyer');
    expect((await t.api.purchase(after.token, product.id)).body['code']).toBe('ACCOUNT_TOO_NEW');
    expect((await t.api.purchase(before.token, product.id)).status).toBe(201);
    expect((await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { accountsCreatedBefore: null })).status).toBe(200);
    expect((await t.api.purchase(after.token, product.id)).status).toBe(201);
  });
});

describe('holds only for buyers who can pay', () => {
  for (const strategy of STRATEGIES) {
    it(`refuses a buyer whose balance, less their held orders, falls short on ${strategy}, and lets them retry with the key once topped up`, async () => {
      const product = await t.api.createProduct({ stock: 10, strategy, priceCents: PRICE, requiresFunds: true });
      const [poor, some] = await t.api.createBuyers(2, 0);
      if (!poor || !some) throw new Error('no buyers');
      const key = { 'idempotency-key': randomUUID() };
      const refused = await t.api.purchase(poor.token, product.id, 1, key);
      expect(refused.status).toBe(402);
      expect(refused.body).toMatchObject({ code: 'INSUFFICIENT_FUNDS', amountCents: PRICE, balanceCents: 0 });
      expect(await heldUnits(product.id)).toBe(0);
      // Not kept: a top-up and the same key buy.
      expect((await t.api.admin('POST', `/v1/admin/users/${poor.id}/credit`, { amountCents: PRICE })).status).toBe(200);
      const bought = await t.api.purchase(poor.token, product.id, 1, key);
      expect(bought.status).toBe(201);
      expect(bought.headers['idempotent-replayed']).toBeUndefined();

      // Enough for one hold: the second is refused while the first is held.
      await t.api.admin('POST', `/v1/admin/users/${some.id}/credit`, { amountCents: PRICE + PRICE / 2 });
      const first = await t.api.purchase(some.token, product.id);
      expect(first.status).toBe(201);
      const second = await t.api.purchase(some.token, product.id);
      expect(second.status).toBe(402);
      expect(second.body).toMatchObject({ code: 'INSUFFICIENT_FUNDS', balanceCents: PRICE / 2 });
      expect(await heldUnits(product.id)).toBe(2);
      if (strategy !== 'naive') await expectInvariant(t.api, product.id, [bought, first]);
    });
  }

  it('asks nothing of a product without the rule (no funds needed)', async () => {
    const product = await t.api.createProduct({ stock: 10, priceCents: PRICE });
    const [poor] = await t.api.createBuyers(1, 0);
    if (!poor) throw new Error('no buyer');
    expect((await t.api.purchase(poor.token, product.id)).status).toBe(201);
  });
});
