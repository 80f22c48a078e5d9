import { describe, expect, it } from 'vitest';
import { SoldOutHints } from '../src/inventory/sold-out-hints.js';
import { Redis } from 'ioredis';
import { KEY_RETENTION_SECONDS } from '../src/infra/key-retention.js';
import { startTestServer, withPipeline } from './support/server.js';
import { storm, tally } from './support/storm.js';

/** Product ids in their one spelling (the lanes and hints refuse any other). */
const P = '01900000-0000-7000-8000-0000000000a1';

describe('sold-out hints', () => {
  it('refuse from memory only for their lifetime, and never when switched off', () => {
    let now = 0;
    const hints = new SoldOutHints(250, () => now);
    hints.noteSoldOut(P, hints.returnsSoFar(P));
    expect(hints.isSoldOut(P)).toBe(true);
    now = 249;
    expect(hints.isSoldOut(P)).toBe(true);
    now = 250;
    expect(hints.isSoldOut(P)).toBe(false);
    hints.noteSoldOut(P, hints.returnsSoFar(P));
    hints.forget(P);
    expect(hints.isSoldOut(P)).toBe(false);
    // A "sold out" asked before units came back is older than those units: ignored.
    const seen = hints.returnsSoFar(P);
    hints.forget(P);
    hints.noteSoldOut(P, seen);
    expect(hints.isSoldOut(P)).toBe(false);
    const off = new SoldOutHints(0, () => now);
    off.noteSoldOut(P, 0);
    expect(off.isSoldOut(P)).toBe(false);
  });

  it('let the next buyer have a unit the moment a hold is cancelled', async () => {
    const t = await startTestServer({ soldOutHintMs: 60_000 });
    try {
      const product = await t.api.createProduct({ stock: 1 });
      const [first, second] = await t.api.createBuyers(2);
      if (!first || !second) throw new Error('no buyers');
      const held = await t.api.purchase(first.token, product.id);
      expect((await t.api.purchase(second.token, product.id)).body).toMatchObject({ code: 'SOLD_OUT', remaining: 0 });
      const orderId = (held.body['order'] as { id: string }).id;
      expect((await t.api.call('POST', `/v1/orders/${orderId}/cancel`, { token: first.token })).status).toBe(200);
      expect((await t.api.purchase(second.token, product.id)).status).toBe(201);
      await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: 1 });
      expect((await t.api.purchase(first.token, product.id)).status).toBe(201);
    } finally {
      await t.stop();
    }
  });

  it('store a refusal from memory with the key in one statement, and still replay a key that bought before', async () => {
    const t = await startTestServer({ soldOutHintMs: 60_000 });
    try {
      const product = await t.api.createProduct({ stock: 1 });
      const [winner, loser] = await t.api.createBuyers(2);
      if (!winner || !loser) throw new Error('no buyers');
      const keyed = (key: string): Record<string, string> => ({ 'idempotency-key': key });
      const won = await t.api.purchase(winner.token, product.id, 1, keyed('buy'));
      expect(won.status).toBe(201);
      // The store says "sold out, 0 left": from here the product is refused from memory.
      expect((await t.api.purchase(loser.token, product.id, 1, keyed('first'))).body).toMatchObject({ code: 'SOLD_OUT' });

      const sql = t.server.system.stores.databases.orders;
      const before = await sql<{ n: number }[]>`select count(*)::int8 as n from idempotency_keys`;
      const refused = await t.api.purchase(loser.token, product.id, 1, keyed('from-memory'));
      expect(refused.status).toBe(409);
      expect(refused.body).toMatchObject({ code: 'SOLD_OUT', remaining: 0 });
      const [row] = await sql<{ status_code: number; response: unknown }[]>`
        select status_code, response from idempotency_keys where buyer_id = ${loser.id} and key = 'from-memory'`;
      expect(row).toMatchObject({ status_code: 409, response: { ok: false, refusal: { code: 'SOLD_OUT' } } });
      expect((await sql<{ n: number }[]>`select count(*)::int8 as n from idempotency_keys`)[0]?.n).toBe((before[0]?.n ?? 0) + 1);

      // The winner's retry arrives while the product is refused from memory: it gets its 201 back.
      const retried = await t.api.purchase(winner.token, product.id, 1, keyed('buy'));
      expect(retried.status).toBe(201);
      expect(retried.headers['idempotent-replayed']).toBe('true');
      expect(retried.body).toEqual(won.body);
      // The same key for another body is still refused as reused, not as sold out.
      const reused = await t.api.purchase(winner.token, product.id, 2, keyed('buy'));
      expect(reused.body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
      const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
      expect(stats.body).toMatchObject({ held: 1, remaining: 0 });
    } finally {
      await t.stop();
    }
  });

  it('refuse keyed buyers of a sold-out redis-lua product without its script, each refusal kept on its own key for the key retention', async () => {
    const t = await startTestServer({ ...withPipeline(), soldOutHintMs: 60_000 });
    const redis = new Redis(t.config.redisUrl ?? '');
    try {
      const product = await t.api.createProduct({ stock: 1, strategy: 'redis-lua' });
      const [winner, loser] = await t.api.createBuyers(2);
      if (!winner || !loser) throw new Error('no buyers');
      const keyed = (key: string): Record<string, string> => ({ 'idempotency-key': key });
      const won = await t.api.purchase(winner.token, product.id, 1, keyed('buy'));
      expect(won.status).toBe(201);
      // The gate said "0 left": from here this process knows the product is sold out. Its terms
      // go (as an evicting Redis would drop them): a request that reached the product's script
      // now would be answered 503 while it is rebuilt.
      const gate = t.server.system.pipeline?.gate;
      if (!gate) throw new Error('no gate');
      expect(await redis.del(gate.keys.product(product.id).terms)).toBe(1);

      const answers = await storm(100, (i) => t.api.purchase(loser.token, product.id, 1, keyed(`late-${i}`)));
      expect(tally(answers)).toEqual({ '409 SOLD_OUT': 100 });
      // Each refusal is kept on the loser's key, and only there, expiring with the key retention.
      for (let i = 0; i < 100; i++) {
        const ttl = await redis.ttl(gate.keys.keyBinding(loser.id, `late-${i}`));
        expect(ttl).toBeGreaterThan(KEY_RETENTION_SECONDS - 60);
        expect(ttl).toBeLessThanOrEqual(KEY_RETENTION_SECONDS);
      }
      // The one hold, and the key's marker (`~`).
      expect(await redis.hlen(gate.keys.product(product.id).holds)).toBe(1 + 1);
      // The key that bought, sent for another body, is refused as reused, not as sold out.
      expect((await t.api.purchase(winner.token, product.id, 2, keyed('buy'))).body).toMatchObject({ code: 'IDEMPOTENCY_KEY_REUSED' });
    } finally {
      redis.disconnect();
      await t.stop();
    }
  });
});
