/**
 * The stock-strategy conformance suite: the same storms over every database strategy, each ending
 * in the audit, and the same Idempotency-Key contract across two products. Choose strategies with `STRATEGIES=a,b` (default: naive,pessimistic,optimistic,atomic,queue,event-sourced,redis-lock,redis-lua;
 * redis-lua runs against the 127.0.0.1 Redis and RabbitMQ, under names of its own).
 *
 * The safe strategies must pass the audit after every storm. `naive` runs the very same storms and
 * the audit must catch it (`OVERSOLD` or `STOCK_MISMATCH`): proof the audit can fail. `optimistic`
 * and `event-sourced` give up after their bounded retries with `CONTENTION`, so they may leave
 * stock unsold in a herd (the buyers were told to retry), but they never oversell; retrying as
 * told sells the rest.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { connect } from '../src/infra/database.js';
import { startEmbeddedPostgres } from '../src/infra/embedded-postgres.js';
import { startServer } from '../src/server.js';
import { isStrategyName, type StrategyName } from '../src/inventory/strategy-names.js';
import { Api, type Answer } from './support/api.js';
import { ADMIN_TOKEN, startTestServer, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

const DEFAULT_STRATEGIES: readonly StrategyName[] = ['naive', 'pessimistic', 'optimistic', 'atomic', 'queue', 'event-sourced', 'redis-lock', 'redis-lua'];
/** Strategies that answer `CONTENTION` once their bounded retries run out. */
const BOUNDED: readonly StrategyName[] = ['optimistic', 'event-sourced', 'redis-lock'];
const STRATEGIES: readonly StrategyName[] = (() => {
  const raw = process.env['STRATEGIES'];
  if (raw === undefined || raw.trim() === '') return DEFAULT_STRATEGIES;
  const names = raw.split(',').map((name) => name.trim()).filter((name) => name !== '');
  const unknown = names.filter((name) => !isStrategyName(name));
  if (unknown.length > 0) throw new Error(`STRATEGIES names unknown strategies: ${unknown.join(', ')}`);
  return names as StrategyName[];
})();

/** Wider than the 5 ms default so naive's race shows on every run, however loaded the machine. */
const NAIVE_GAP_MS = 25;

type Buyer = { id: string; token: string };
let t: TestServer;
let buyers: Buyer[];

beforeAll(async () => {
  t = await startTestServer({ naiveGapMs: NAIVE_GAP_MS, ...(STRATEGIES.some((name) => name.startsWith('redis-')) ? withPipeline() : {}) });
  buyers = await t.api.createBuyers(2_000);
});
afterAll(async () => {
  await t?.stop();
});

function buyer(index: number): Buyer {
  const found = buyers[index];
  if (!found) throw new Error(`no buyer ${index}`);
  return found;
}

async function stats(productId: string): Promise<Record<string, number>> {
  const answer = await t.api.admin<Record<string, number>>('GET', `/v1/admin/products/${productId}/stats`);
  expect(answer.status).toBe(200);
  return answer.body;
}

/** The naive strategy's proof: the audit reports the oversell it caused. */
async function expectOversellCaught(productId: string): Promise<void> {
  const audit = await t.api.audit(productId);
  expect(audit.ok).toBe(false);
  const kinds = audit.violations.map((violation) => violation.kind);
  expect(kinds.some((kind) => kind === 'OVERSOLD' || kind === 'STOCK_MISMATCH'), `violations: ${kinds.join(', ')}`).toBe(true);
}

function orderOf(answer: Answer): { id: string; quantity: number } {
  return answer.body['order'] as { id: string; quantity: number };
}

/** Cancels through the orders route once it exists, else through inventory (the strategy's release). */
async function cancel(token: string, orderId: string): Promise<void> {
  if (t.server.app.hasRoute({ method: 'POST', url: '/v1/orders/:id/cancel' })) {
    const answer = await t.api.call('POST', `/v1/orders/${orderId}/cancel`, { token });
    expect(answer.status).toBeLessThan(300);
  } else {
    await t.server.system.inventory.release(orderId);
  }
}

describe.each(STRATEGIES)('the %s strategy', (strategy) => {
  const unsafe = strategy === 'naive';
  const bounded = BOUNDED.includes(strategy);
  const product = (fields: Record<string, unknown>) => t.api.createProduct({ ...fields, strategy });

  it(unsafe ? 'oversells when 1,000 buyers race for 1 unit, and the audit catches it' : 'holds exactly 1 unit when 1,000 buyers race for 1', async () => {
    const { id } = await product({ stock: 1 });
    const answers = await storm(1_000, (i) => t.api.purchase(buyer(i).token, id));
    if (unsafe) return expectOversellCaught(id);

    // Bounded strategies too: only one sale ever moves the version (or the stream), so each loser retries at most once.
    expect(tally(answers)).toEqual({ '201': 1, '409 SOLD_OUT': 999 });
    expect(await stats(id)).toMatchObject({ held: 1, remaining: 0 });
    await expectInvariant(t.api, id, answers);
  });

  it(
    unsafe
      ? 'oversells when 2,000 buyers race for 100 units, and the audit catches it'
      : bounded
        ? 'never oversells when 2,000 buyers race for 100 units, and sells the rest to buyers who retry after CONTENTION'
        : 'holds exactly 100 units when 2,000 buyers race for 100',
    async () => {
      const { id } = await product({ stock: 100 });
      const answers = await storm(2_000, (i) => t.api.purchase(buyer(i).token, id));
      if (unsafe) return expectOversellCaught(id);
      await expectInvariant(t.api, id, answers);
      const counts = tally(answers);
      if (!bounded) {
        expect(counts).toEqual({ '201': 100, '409 SOLD_OUT': 1_900 });
        expect(await stats(id)).toMatchObject({ held: 100, remaining: 0 });
        return;
      }
      // Bounded retries: all stock sold is not guaranteed in one storm. What is: never more than
      // 100 held, every answer definitive or CONTENTION, and stock left only if someone was told to retry.
      const sold = counts['201'] ?? 0;
      expect(sold).toBeLessThanOrEqual(100);
      expect(Object.keys(counts).every((key) => ['201', '409 SOLD_OUT', '409 CONTENTION'].includes(key))).toBe(true);
      if (sold < 100) expect(counts['409 CONTENTION'] ?? 0).toBeGreaterThan(0);
      for (const answer of answers.filter((a) => a.body['code'] === 'CONTENTION')) {
        expect(Number(answer.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      }
      // The buyers told CONTENTION retry as told (Retry-After) until everyone has a definitive answer.
      let waiting = answers.flatMap((answer, i) => (answer.body['code'] === 'CONTENTION' ? [i] : []));
      const all = [...answers];
      for (let round = 0; waiting.length > 0; round += 1) {
        expect(round, 'CONTENTION rounds').toBeLessThan(30);
        await sleep(1_000);
        const retried = await storm(waiting.length, (k) => t.api.purchase(buyer(waiting[k] ?? 0).token, id));
        all.push(...retried);
        waiting = waiting.filter((_, k) => retried[k]?.body['code'] === 'CONTENTION');
      }
      expect(await stats(id)).toMatchObject({ held: 100, remaining: 0 });
      await expectInvariant(t.api, id, all);
    },
  );

  it(
    unsafe
      ? 'oversells with mixed quantities 1–3 against 50 units, and the audit catches it'
      : 'takes all or nothing when 201 buyers ask for 1–3 units of 50',
    async () => {
      const { id } = await product({ stock: 50 });
      const quantity = (i: number): number => (i % 3) + 1;
      const answers = await storm(201, (i) => t.api.purchase(buyer(i).token, id, quantity(i)));
      if (unsafe) return expectOversellCaught(id);

      let heldUnits = 0;
      answers.forEach((answer, i) => {
        if (answer.status === 201) {
          expect(orderOf(answer).quantity).toBe(quantity(i));
          heldUnits += quantity(i);
        } else if (answer.body['code'] === 'SOLD_OUT') {
          // Refused because fewer than the whole quantity remained: never a partial hold.
          expect(answer.body['remaining']).toBeLessThan(quantity(i));
        } else {
          expect(bounded && answer.body['code'] === 'CONTENTION', `unexpected ${answer.status} ${String(answer.body['code'])}`).toBe(true);
        }
      });
      expect(heldUnits).toBeLessThanOrEqual(50);
      const after = await stats(id);
      expect(after).toMatchObject({ held: heldUnits, remaining: 50 - heldUnits });
      // 402 units were asked for: a strategy that always decides stops only when < 3 remain.
      if (!bounded) expect(after['remaining']).toBeLessThanOrEqual(2);
      await expectInvariant(t.api, id, answers);
    },
  );

  it(
    unsafe
      ? 'loses updates when reservations race cancels and expiries, and the audit catches it'
      : 'keeps the books straight when reservations race cancels and expiries',
    async () => {
      const { id } = await product({ stock: 20, holdSeconds: 1, perBuyerLimit: 1 });
      const inventory = t.server.system.inventory;
      let storming = true;
      const sweeping = (async () => {
        while (storming) {
          await inventory.sweepExpired();
          await sleep(50);
        }
      })();
      // Even buyers cancel their hold at once and buy again (the limit was given back); odd ones
      // let it expire. 300 buyers for 20 units, so cancels and expiries feed the storm.
      const answers = (
        await storm(300, async (i) => {
          const b = buyer(1_000 + i);
          const first = await t.api.purchase(b.token, id);
          if (first.status !== 201 || i % 2 === 1) return [first];
          await cancel(b.token, orderOf(first).id);
          return [first, await t.api.purchase(b.token, id)];
        })
      ).flat();
      storming = false;
      await sweeping;

      // Once the holds have expired by the database's clock, a cancel races an expiry on every
      // hold: each is released exactly once, never twice (a hold not yet expired is cancelled).
      await sleep(1_100);
      const held = answers.filter((a) => a.status === 201).map((a) => orderOf(a).id);
      const releases = await Promise.all(held.flatMap((orderId) => [inventory.release(orderId), inventory.expire(orderId)]));
      for (let k = 0; k < releases.length; k += 2) {
        expect(releases[k] !== null && releases[k + 1] !== null, 'released twice').toBe(false);
      }
      if (unsafe) return expectOversellCaught(id);

      const sold = answers.filter((a) => a.status === 201).length;
      expect(sold).toBeGreaterThanOrEqual(bounded ? 1 : 20);
      for (const answer of answers.filter((a) => a.status !== 201)) {
        expect(['SOLD_OUT', ...(bounded ? ['CONTENTION'] : [])]).toContain(answer.body['code']);
      }
      const after = await stats(id);
      expect(after).toMatchObject({ stocked: 20, held: 0, paid: 0, remaining: 20 });
      expect((after['cancelled'] ?? 0) + (after['expired'] ?? 0)).toBe(sold);
      await expectInvariant(t.api, id, answers);
    },
  );

  it(
    unsafe
      ? 'keeps the limit but loses an update when one buyer races itself, and the audit catches it'
      : 'gives one buyer firing 100 purchases at once exactly the limit of 2',
    async () => {
      const { id } = await product({ stock: 100, perBuyerLimit: 2 });
      const [me] = await t.api.createBuyers(1);
      if (!me) throw new Error('no buyer');
      const answers = await storm(100, () => t.api.purchase(me.token, id));
      const counts = tally(answers);
      if (strategy === 'redis-lock') {
        // Every attempt takes the lock to read the buyer's units; one that waits past
        // REDIS_LOCK_WAIT_MS is told CONTENTION (come back), never sold a third unit.
        expect(counts['201']).toBe(2);
        expect((counts['409 LIMIT_EXCEEDED'] ?? 0) + (counts['409 CONTENTION'] ?? 0)).toBe(98);
      } else {
        // Bounded strategies too: only the two sales move the version (or the stream), so no attempt loses more than twice.
        expect(counts).toEqual({ '201': 2, '409 LIMIT_EXCEEDED': 98 });
      }
      if (unsafe) {
        await expectOversellCaught(id);
        const audit = await t.api.audit(id);
        expect(audit.violations.map((v) => v.kind)).not.toContain('BUYER_OVER_LIMIT');
        return;
      }
      expect(await stats(id)).toMatchObject({ held: 2, remaining: 98 });
      await expectInvariant(t.api, id, answers);
    },
  );

  it('binds one Idempotency-Key to one request across two products: the other product is refused 422 and nothing changes, a retry gets the first answer', async () => {
    const [a, b] = [await product({ stock: 5, priceCents: 1_000 }), await product({ stock: 5, priceCents: 1_000 })];
    const [me] = await t.api.createBuyers(1, 10_000);
    if (!me) throw new Error('no buyer');
    const headers = { 'idempotency-key': randomUUID() };
    const buy = (productId: string): Promise<Answer> =>
      t.api.call('POST', '/v1/purchases', { token: me.token, body: { productId, quantity: 1, pay: true }, headers });

    const first = await buy(a.id);
    expect(first.status).toBe(201);
    expect(first.body['order']).toMatchObject({ productId: a.id, status: 'paid' });
    const other = await buy(b.id);
    expect(other.status, JSON.stringify(other.body)).toBe(422);
    expect(other.body['code']).toBe('IDEMPOTENCY_KEY_REUSED');
    const retry = await buy(a.id);
    expect(retry.status).toBe(201);
    expect(retry.body['order']).toMatchObject({ id: orderOf(first).id, productId: a.id, status: 'paid' });

    const balance = await t.api.call<{ balanceCents: number }>('GET', '/v1/me', { token: me.token });
    expect(balance.body.balanceCents).toBe(10_000 - 1_000);
    await expectInvariant(t.api, a.id, [first, retry]);
    await expectInvariant(t.api, b.id, []);
    const ordersOf = async (productId: string): Promise<unknown[]> =>
      (await t.api.admin<{ orders: unknown[] }>('GET', `/v1/admin/products/${productId}/orders?limit=10`)).body.orders;
    expect(await ordersOf(a.id)).toHaveLength(1);
    expect(await ordersOf(b.id)).toEqual([]);
    expect(await stats(b.id)).toMatchObject({ held: 0, paid: 0, remaining: 5 });
  });

  it('names every refusal and is idempotent on the allocation id', async () => {
    const chosen = t.server.system.strategies.get(strategy);
    if ('unavailable' in chosen) throw new Error(chosen.unavailable);
    const ask = (productId: string, quantity = 1, allocationId: string = randomUUID()) =>
      chosen.reserve({ allocationId, productId, buyerId: buyer(0).id, quantity });

    expect(await ask(randomUUID())).toEqual({ ok: false, reason: 'PRODUCT_NOT_FOUND' });
    const later = await product({ stock: 5, opensAt: new Date(Date.now() + 3_600_000).toISOString() });
    expect(await ask(later.id)).toMatchObject({ ok: false, reason: 'SALE_NOT_OPEN', opensAt: later['opensAt'] });
    const ended = await product({ stock: 5 });
    expect((await t.api.admin('POST', `/v1/admin/products/${ended.id}/end`)).status).toBe(200);
    expect(await ask(ended.id)).toEqual({ ok: false, reason: 'SALE_ENDED' });
    const limited = await product({ stock: 2, perBuyerLimit: 2 });
    expect(await ask(limited.id, 3)).toEqual({ ok: false, reason: 'LIMIT_EXCEEDED', limit: 2 });
    expect(await ask(limited.id, 1)).toMatchObject({ ok: true });
    const other = await chosen.reserve({ allocationId: randomUUID(), productId: limited.id, buyerId: buyer(1).id, quantity: 2 });
    expect(other).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 1 });

    // The same allocation id, ten times at once: one allocation, one unit taken.
    const { id } = await product({ stock: 10 });
    const allocationId = randomUUID();
    const outcomes = await storm(10, () => ask(id, 1, allocationId));
    for (const outcome of outcomes) {
      expect(outcome).toMatchObject({ ok: true, allocation: { id: allocationId, quantity: 1, status: 'held' } });
    }
    expect(await ask(id, 1, allocationId)).toMatchObject({ ok: true, allocation: { id: allocationId } });
    expect(await stats(id)).toMatchObject({ held: 1, remaining: 9 });
  });
});

describe('choosing a strategy per product', () => {
  it('sells products under different strategies side by side and shows each one', async () => {
    for (const strategy of STRATEGIES) {
      const created = await t.api.createProduct({ stock: 1, strategy });
      const shown = await t.api.call('GET', `/v1/products/${created.id}`);
      expect(shown.body).toMatchObject({ strategy });
      expect((await t.api.purchase(buyer(0).token, created.id)).status).toBe(201);
    }
  });

  it('refuses an unknown strategy, and one whose store is not configured names what is missing', async () => {
    const unknown = await t.api.admin('POST', '/v1/admin/products', { name: 'x', priceCents: 1, stock: 1, strategy: 'bogus' });
    expect(unknown.status).toBe(400);
    const available: readonly string[] = t.server.system.strategies.available();
    // With Redis configured, a strategy not built yet says so; without, it names what is missing.
    const needsRedis = t.server.system.config.redisUrl === undefined ? 'REDIS_URL' : 'not available in this build';
    for (const [strategy, needs] of [
      ['redis-lua', 'REDIS_URL'],
      ['redis-lock', needsRedis],
    ].filter(([strategy]) => !available.includes(strategy as string)) as [string, string][]) {
      const answer = await t.api.admin('POST', '/v1/admin/products', { name: 'x', priceCents: 1, stock: 1, strategy });
      expect(answer.status).toBe(400);
      expect(answer.body).toMatchObject({ code: 'STRATEGY_UNAVAILABLE' });
      expect(answer.body['detail']).toContain(needs);
    }
  });
});

describe('the stock step holds a connection only for itself', () => {
  const PAYMENT_DELAY_MS = 4_000;
  let small: TestServer;
  beforeAll(async () => {
    small = await startTestServer({ dbPoolSize: 2, paymentDelayMs: PAYMENT_DELAY_MS, naiveGapMs: NAIVE_GAP_MS, ...(STRATEGIES.some((name) => name.startsWith('redis-')) ? withPipeline() : {}) });
  });
  afterAll(async () => {
    await small?.stop();
  });

  it('keeps buying on a 2-connection pool while 10 pays per strategy sit in PAYMENT_DELAY_MS, with no transaction open', async () => {
    const payers = await small.api.createBuyers(10 * STRATEGIES.length);
    const held: { token: string; orderId: string; productId: string }[] = [];
    const later: string[] = [];
    for (const [s, strategy] of STRATEGIES.entries()) {
      const product = await small.api.createProduct({ stock: 10, strategy });
      later.push((await small.api.createProduct({ stock: 5, strategy })).id);
      for (const payer of payers.slice(s * 10, s * 10 + 10)) {
        const answer = await small.api.purchase(payer.token, product.id);
        expect(answer.status).toBe(201);
        held.push({ token: payer.token, orderId: orderOf(answer).id, productId: product.id });
      }
    }

    // Every pay now sleeps PAYMENT_DELAY_MS. Had a pay held one of the inventory pool's two
    // connections (or a lock) while it slept, nothing below could finish before the pays did.
    let paysDone = 0;
    const pays = Promise.all(
      held.map(async ({ token, orderId }) => {
        const answer = await small.api.call('POST', `/v1/orders/${orderId}/pay`, { token });
        paysDone += 1;
        return answer;
      }),
    );
    const probe = connect(small.server.system.stores.databases.urls.inventory, 1, 'flashsale:probe');
    try {
      const buyersNow = await small.api.createBuyers(20);
      const answers = await storm(20 * later.length, (i) => small.api.purchase(buyersNow[i % 20]?.token ?? '', later[Math.floor(i / 20)] ?? ''));
      // 'idle in transaction': a transaction left open while the app does something else (an
      // active statement, such as the sweeper's, is its own short transaction and is not that).
      const sessions = await probe<{ state: string | null; open: boolean }[]>`
        select state, state like 'idle in transaction%' as open from pg_stat_activity
         where datname = current_database() and application_name = 'flashsale:inventory'`;
      expect(paysDone, 'a pay finished before the purchases did').toBe(0);
      expect(sessions.length).toBeLessThanOrEqual(2);
      expect(sessions.filter((session) => session.open), 'inventory sessions inside a transaction').toEqual([]);
      expect(answers.every((answer) => answer.status === 201 || answer.status === 409)).toBe(true);
      STRATEGIES.forEach((strategy, s) => {
        const won = answers.slice(s * 20, s * 20 + 20).filter((answer) => answer.status === 201);
        if (strategy !== 'naive') expect(won, strategy).toHaveLength(5);
      });
    } finally {
      await probe.end({ timeout: 5 });
    }

    const paid = await pays;
    expect(paid.map((answer) => answer.status)).toEqual(held.map(() => 200));
    for (const [s, strategy] of STRATEGIES.entries()) {
      const productId = held[s * 10]?.productId ?? '';
      const after = await small.api.admin('GET', `/v1/admin/products/${productId}/stats`);
      expect(after.body, strategy).toMatchObject({ paid: 10, held: 0, remaining: 0 });
    }
  });
});

describe.runIf(STRATEGIES.includes('atomic'))('the atomic strategy on the embedded PostgreSQL', () => {
  it('holds exactly 5 units when 300 buyers race for 5', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'flashsale-conformance-'));
    const embedded = await startEmbeddedPostgres({ directory: join(dir, 'pg'), ephemeral: true });
    try {
      const config = loadConfig(
        { LOG_LEVEL: 'warn' },
        {
          databaseUrl: embedded.url,
          dataDir: dir,
          adminToken: ADMIN_TOKEN,
          tokenSecret: 'test-token-secret-0123456789-0123456789',
          seedDemo: false,
          port: 0,
        },
      );
      const server = await startServer(config);
      const api = new Api(server.url, ADMIN_TOKEN);
      try {
        const product = await api.createProduct({ stock: 5, strategy: 'atomic' });
        const crowd = await api.createBuyers(300);
        const answers = await storm(crowd.length, (i) => api.purchase(crowd[i]?.token ?? '', product.id));
        expect(tally(answers)).toEqual({ '201': 5, '409 SOLD_OUT': 295 });
        await expectInvariant(api, product.id, answers);
      } finally {
        await api.close();
        await server.close();
      }
    } finally {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
