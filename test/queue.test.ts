/**
 * The `queue` strategy's own promises, beyond the conformance suite: first come, first served in
 * the order the line received the requests; many reservations decided per statement; idempotent
 * by allocation id inside a group; a full line or a long wait answered `503 OVERLOADED` with
 * nothing done; units that come back sell again at once.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/infra/database.js';
import type { ReserveOutcome } from '../src/inventory/inventory.types.js';
import type { StockStrategy } from '../src/inventory/stock-strategy.js';
import { startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

let t: TestServer;
let queue: StockStrategy;

beforeAll(async () => {
  t = await startTestServer({ strategy: 'queue' });
  const built = t.server.system.strategies.get('queue');
  if ('unavailable' in built) throw new Error(built.unavailable);
  queue = built;
});
afterAll(async () => {
  await t?.stop();
});

const inventorySql = () => connect(TEST_DATABASE_URL.replace(/\/[^/]*$/, `/${t.config.databasePrefix}inventory`), 1, 'flashsale:queue-test');

async function versionOf(productId: string): Promise<number> {
  const sql = inventorySql();
  try {
    const [row] = await sql<{ version: number }[]>`select version from products where id = ${productId}`;
    return row?.version ?? -1;
  } finally {
    await sql.end();
  }
}

describe('the line', () => {
  it('grants in arrival order: a request for more than remains is refused whole, and a later smaller one takes what is left', async () => {
    const product = await t.api.createProduct({ stock: 5 });
    const buyers = await t.api.createBuyers(8);
    const quantities = [2, 2, 3, 1, 1, 1, 1, 1];
    // Handed to the line one after another, without waiting: the line's order is this order.
    const asked = quantities.map((quantity, i) =>
      queue.reserve({ allocationId: randomUUID(), productId: product.id, buyerId: (buyers[i] as { id: string }).id, quantity }),
    );
    const outcomes = await Promise.all(asked);
    expect(outcomes.map((outcome) => (outcome.ok ? 'ok' : outcome.reason))).toEqual([
      'ok',
      'ok',
      'SOLD_OUT',
      'ok',
      'SOLD_OUT',
      'SOLD_OUT',
      'SOLD_OUT',
      'SOLD_OUT',
    ]);
    expect(outcomes[2]).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 1 });
  });

  it('decides a storm in far fewer statements than buyers, and stays exact', async () => {
    const product = await t.api.createProduct({ stock: 1_000 });
    const before = await versionOf(product.id);
    const buyers = await t.api.createBuyers(600);
    const answers = await storm(600, (i) => t.api.purchase((buyers[i] as { token: string }).token, product.id));
    expect(tally(answers)).toEqual({ '201': 600 });
    // Each group bumps the product's version once: one statement for many buyers.
    const statements = (await versionOf(product.id)) - before;
    expect(statements).toBeGreaterThan(0);
    expect(statements).toBeLessThan(150);
    await expectInvariant(t.api, product.id, answers);
  });

  it('is idempotent by allocation id inside one group', async () => {
    const product = await t.api.createProduct({ stock: 10 });
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const allocationId = randomUUID();
    const outcomes: ReserveOutcome[] = await Promise.all(
      Array.from({ length: 20 }, () => queue.reserve({ allocationId, productId: product.id, buyerId: buyer.id, quantity: 1 })),
    );
    for (const outcome of outcomes) expect(outcome).toMatchObject({ ok: true, allocation: { id: allocationId, quantity: 1 } });
    const stats = await t.api.admin<Record<string, number>>('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toMatchObject({ held: 1, remaining: 9 });
  });

  it('sells a unit that comes back at once, though the product sold out a moment ago', async () => {
    const product = await t.api.createProduct({ stock: 1 });
    const [first, second] = await t.api.createBuyers(2);
    if (!first || !second) throw new Error('no buyers');
    const bought = await t.api.purchase(first.token, product.id);
    expect(bought.status).toBe(201);
    expect((await t.api.purchase(second.token, product.id)).body['code']).toBe('SOLD_OUT');
    const orderId = (bought.body['order'] as { id: string }).id;
    expect((await t.api.call('POST', `/v1/orders/${orderId}/cancel`, { token: first.token })).status).toBe(200);
    expect((await t.api.purchase(second.token, product.id)).status).toBe(201);
    expect((await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: 1 })).status).toBe(200);
    expect((await t.api.purchase(first.token, product.id)).status).toBe(201);
  });
});

describe('a line that is full, or too slow', () => {
  let small: TestServer;
  beforeAll(async () => {
    small = await startTestServer({ strategy: 'queue', queueCapacity: 20, queueWaitMs: 300, queueGroupMax: 5 });
  });
  afterAll(async () => {
    await small?.stop();
  });

  it('answers 503 OVERLOADED at once beyond its capacity or its wait, with nothing done', async () => {
    const product = await small.api.createProduct({ stock: 1_000 });
    const buyers = await small.api.createBuyers(200);
    // Hold the product row, so the first group waits on the lock and the line fills up behind it.
    // The lock is let go only once every other request has been answered (or after 10 s, so a
    // wrong count fails the assertion below instead of hanging), whatever the machine's speed.
    const sql = connect(TEST_DATABASE_URL.replace(/\/[^/]*$/, `/${small.config.databasePrefix}inventory`), 1, 'flashsale:queue-lock');
    let answered = 0;
    let allButFirstAnswered = (): void => undefined;
    const othersDone = new Promise<void>((resolve) => {
      allButFirstAnswered = resolve;
      setTimeout(resolve, 10_000).unref();
    });
    let rowLocked = (): void => undefined;
    const locked = new Promise<void>((resolve) => (rowLocked = resolve));
    const transaction = sql.begin(async (tx) => {
      await tx`select 1 from products where id = ${product.id} for update`;
      rowLocked();
      await othersDone;
    });
    // A lock connection that fails (the shared server out of connections) fails the test at once.
    await Promise.race([locked, transaction]);
    const answers = await storm(200, async (i) => {
      const answer = await small.api.purchase((buyers[i] as { token: string }).token, product.id);
      if (++answered === 199) allButFirstAnswered();
      return answer;
    });
    await transaction;
    await sql.end();
    const counts = tally(answers);
    // The first to arrive goes at once, alone (no timer gathers a group), and waits on the lock;
    // twenty wait behind it until their wait is over (503), the rest are refused at once because
    // the line is full (503). None of those 503s took anything.
    expect(counts).toEqual({ '201': 1, '503 OVERLOADED': 199 });
    for (const answer of answers.filter((a) => a.status === 503)) expect(answer.headers['retry-after']).toBeDefined();
    await expectInvariant(small.api, product.id, answers);
    const audit = await small.api.audit(product.id);
    expect(audit.products[0]).toMatchObject({ held: 1, remaining: 999 });
  });
});
