/**
 * The whole checkout lifecycle over HTTP, on real PostgreSQL: buy, pay, cancel, expire (also
 * across a restart), instant pay, insufficient funds, the admin's tools, /metrics and /docs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Answer } from './support/api.js';
import { startTestServer, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

interface OrderBody {
  id: string;
  status: string;
  amountCents: number;
  expiresAt: string;
}

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

function orderOf(answer: Answer): OrderBody {
  return answer.body['order'] as OrderBody;
}

async function balanceOf(server: TestServer, token: string): Promise<number> {
  const me = await server.api.call<{ balanceCents: number }>('GET', '/v1/me', { token });
  return me.body.balanceCents;
}

async function ledgerOf(server: TestServer, userId: string): Promise<{ kind: string; order_id: string | null; amount_cents: number }[]> {
  const sql = server.server.system.stores.databases.users;
  return sql`select kind, order_id, amount_cents from ledger_entries where user_id = ${userId} order by id`;
}

async function stats(server: TestServer, productId: string): Promise<Record<string, number>> {
  return (await server.api.admin<Record<string, number>>('GET', `/v1/admin/products/${productId}/stats`)).body;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await sleep(100);
  }
}

describe('pay', () => {
  it('debits the balance once, confirms the hold and marks the order paid', async () => {
    const [buyer] = await t.api.createBuyers(1, 10_000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 2500, stock: 3 });
    const bought = await t.api.purchase(buyer.token, product.id, 2);
    expect(bought.status).toBe(201);
    const order = orderOf(bought);

    const paid = await t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token });
    expect(paid.status).toBe(200);
    expect(orderOf(paid)).toMatchObject({ id: order.id, status: 'paid', amountCents: 5000 });
    expect(await balanceOf(t, buyer.token)).toBe(5000);
    expect(await ledgerOf(t, buyer.id)).toEqual([{ kind: 'debit', order_id: order.id, amount_cents: 5000 }]);
    expect(await stats(t, product.id)).toMatchObject({ stocked: 3, held: 0, paid: 2, remaining: 1 });

    const fetched = await t.api.call('GET', `/v1/orders/${order.id}`, { token: buyer.token });
    expect(orderOf(fetched).status).toBe('paid');
    const me = await t.api.call<{ balanceCents: number; orders: OrderBody[] }>('GET', '/v1/me', { token: buyer.token });
    expect(me.body.orders.map((o) => [o.id, o.status])).toEqual([[order.id, 'paid']]);

    const again = await t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'ORDER_ALREADY_PAID' });
    const cancel = await t.api.call('POST', `/v1/orders/${order.id}/cancel`, { token: buyer.token });
    expect(cancel.status).toBe(409);
    expect(cancel.body).toMatchObject({ code: 'ORDER_NOT_CANCELLABLE', orderStatus: 'paid' });
    expect(await balanceOf(t, buyer.token)).toBe(5000);
    await expectInvariant(t.api, product.id, [bought]);
  });

  it('refuses INSUFFICIENT_FUNDS and leaves the hold, which an admin credit then lets the buyer pay', async () => {
    const [buyer] = await t.api.createBuyers(1, 999);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 1000, stock: 1 });
    const order = orderOf(await t.api.purchase(buyer.token, product.id));

    const poor = await t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token });
    expect(poor.status).toBe(402);
    expect(poor.body).toMatchObject({ code: 'INSUFFICIENT_FUNDS', balanceCents: 999, amountCents: 1000 });
    expect(await ledgerOf(t, buyer.id)).toEqual([]);
    expect(await stats(t, product.id)).toMatchObject({ held: 1, remaining: 0 });

    const credit = await t.api.admin('POST', `/v1/admin/users/${buyer.id}/credit`, { amountCents: 1 });
    expect(credit.status).toBe(200);
    expect(credit.body['user']).toMatchObject({ id: buyer.id, balanceCents: 1000 });
    const paid = await t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token });
    expect(paid.status).toBe(200);
    expect(await balanceOf(t, buyer.token)).toBe(0);
    expect((await ledgerOf(t, buyer.id)).map((e) => e.kind)).toEqual(['credit', 'debit']);
  });

  it("does not let a buyer see, pay or cancel another buyer's order", async () => {
    const [owner, other] = await t.api.createBuyers(2);
    if (!owner || !other) throw new Error('no buyers');
    const product = await t.api.createProduct({ stock: 1 });
    const order = orderOf(await t.api.purchase(owner.token, product.id));
    for (const [method, path] of [
      ['GET', `/v1/orders/${order.id}`],
      ['POST', `/v1/orders/${order.id}/pay`],
      ['POST', `/v1/orders/${order.id}/cancel`],
    ] as const) {
      const answer = await t.api.call(method, path, { token: other.token });
      expect(answer.status).toBe(404);
      expect(answer.body).toMatchObject({ code: 'ORDER_NOT_FOUND' });
    }
    expect(await stats(t, product.id)).toMatchObject({ held: 1 });
  });

  it('debits once when 20 retries of one pay race (no key)', async () => {
    const [buyer] = await t.api.createBuyers(1, 10_000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 700, stock: 1 });
    const bought = await t.api.purchase(buyer.token, product.id);
    const order = orderOf(bought);
    const answers = await storm(20, () => t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token }));
    const counts = tally(answers);
    expect(counts['200']).toBeGreaterThanOrEqual(1);
    expect(Object.keys(counts).every((key) => key === '200' || key === '409 ORDER_ALREADY_PAID')).toBe(true);
    expect(await ledgerOf(t, buyer.id)).toEqual([{ kind: 'debit', order_id: order.id, amount_cents: 700 }]);
    expect(await balanceOf(t, buyer.token)).toBe(9300);
    await expectInvariant(t.api, product.id, [bought]);
  });
});

describe('cancel', () => {
  it('returns the unit at once; a cancelled order cannot be paid', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 1, perBuyerLimit: 1 });
    const bought = await t.api.purchase(buyer.token, product.id);
    const order = orderOf(bought);
    expect((await t.api.purchase(buyer.token, product.id)).body).toMatchObject({ code: 'SOLD_OUT' });

    const cancelled = await t.api.call('POST', `/v1/orders/${order.id}/cancel`, { token: buyer.token });
    expect(cancelled.status).toBe(200);
    expect(orderOf(cancelled).status).toBe('cancelled');
    expect(await stats(t, product.id)).toMatchObject({ held: 0, remaining: 1, cancelled: 1 });
    const twice = await t.api.call('POST', `/v1/orders/${order.id}/cancel`, { token: buyer.token });
    expect(twice.status).toBe(200);

    const pay = await t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token });
    expect(pay.status).toBe(409);
    expect(pay.body).toMatchObject({ code: 'ORDER_NOT_PAYABLE' });
    // The per-buyer limit counts only held and paid units: the buyer may buy again.
    const rebought = await t.api.purchase(buyer.token, product.id);
    expect(rebought.status).toBe(201);
    await expectInvariant(t.api, product.id, [bought, rebought]);
  });
});

describe('instant mode', () => {
  it('reserves and pays in one call', async () => {
    const [buyer] = await t.api.createBuyers(1, 5000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 1500, stock: 2 });
    const answer = await t.api.call('POST', '/v1/purchases', { token: buyer.token, body: { productId: product.id, quantity: 2, pay: true } });
    expect(answer.status).toBe(201);
    expect(orderOf(answer)).toMatchObject({ status: 'paid', amountCents: 3000 });
    expect(await balanceOf(t, buyer.token)).toBe(2000);
    expect(await stats(t, product.id)).toMatchObject({ paid: 2, held: 0, remaining: 0 });
    await expectInvariant(t.api, product.id, [answer]);
  });

  it('releases the unit when the debit fails', async () => {
    const [buyer] = await t.api.createBuyers(1, 100);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 1500, stock: 1 });
    const answer = await t.api.call('POST', '/v1/purchases', { token: buyer.token, body: { productId: product.id, quantity: 1, pay: true } });
    expect(answer.status).toBe(402);
    expect(answer.body).toMatchObject({ code: 'INSUFFICIENT_FUNDS' });
    expect(await stats(t, product.id)).toMatchObject({ held: 0, paid: 0, remaining: 1 });
    expect(await balanceOf(t, buyer.token)).toBe(100);
    const me = await t.api.call<{ orders: OrderBody[] }>('GET', '/v1/me', { token: buyer.token });
    expect(me.body.orders.map((o) => o.status)).toEqual(['cancelled']);
    await expectInvariant(t.api, product.id, []);
  });
});

describe('races', () => {
  it('settles a pay racing a cancel one way or the other, and never keeps money for a cancelled order', async () => {
    const buyers = await t.api.createBuyers(10, 5000);
    const product = await t.api.createProduct({ priceCents: 1000, stock: 10 });
    const bought = await Promise.all(buyers.map((buyer) => t.api.purchase(buyer.token, product.id)));
    const outcomes = await Promise.all(
      buyers.map(async (buyer, i) => {
        const id = orderOf(bought[i] as Answer).id;
        const [pay, cancel] = await Promise.all([
          t.api.call('POST', `/v1/orders/${id}/pay`, { token: buyer.token }),
          t.api.call('POST', `/v1/orders/${id}/cancel`, { token: buyer.token }),
        ]);
        const order = orderOf(await t.api.call('GET', `/v1/orders/${id}`, { token: buyer.token }));
        return { pay: pay.status, cancel: cancel.status, status: order.status, balance: await balanceOf(t, buyer.token) };
      }),
    );
    for (const outcome of outcomes) {
      if (outcome.status === 'paid') {
        expect(outcome).toMatchObject({ pay: 200, cancel: 409, balance: 4000 });
      } else {
        expect(outcome).toMatchObject({ status: 'cancelled', cancel: 200, pay: 409, balance: 5000 });
      }
    }
    const paid = outcomes.filter((o) => o.status === 'paid').length;
    expect(await stats(t, product.id)).toMatchObject({ paid, held: 0, cancelled: 10 - paid, remaining: 10 - paid });
    await expectInvariant(t.api, product.id, bought);
  });

  it('sells exactly the stock in instant mode when 60 buyers race for 10 units, charging only the winners', async () => {
    const buyers = await t.api.createBuyers(60, 3000);
    const product = await t.api.createProduct({ priceCents: 1000, stock: 10 });
    const answers = await storm(buyers.length, (i) =>
      t.api.call('POST', '/v1/purchases', { token: buyers[i]?.token ?? '', body: { productId: product.id, quantity: 1, pay: true } }),
    );
    expect(tally(answers)).toEqual({ '201': 10, '409 SOLD_OUT': 50 });
    const users = t.server.system.stores.databases.users;
    const ids = buyers.map((b) => b.id);
    const [sum] = await users<{ total: number }[]>`select sum(balance_cents)::int8 as total from users where id = any(${ids}::uuid[])`;
    expect(sum?.total).toBe(60 * 3000 - 10 * 1000);
    expect(await stats(t, product.id)).toMatchObject({ paid: 10, held: 0, remaining: 0 });
    await expectInvariant(t.api, product.id, answers);
  });
});

describe('expiry', () => {
  it('returns an unpaid hold to stock and marks the order expired; paying it then is 410 and costs nothing', async () => {
    const [buyer] = await t.api.createBuyers(1, 5000);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ priceCents: 1000, stock: 1, holdSeconds: 1 });
    const bought = await t.api.purchase(buyer.token, product.id);
    const order = orderOf(bought);
    await waitFor(async () => orderOf(await t.api.call('GET', `/v1/orders/${order.id}`, { token: buyer.token })).status === 'expired');
    expect(await stats(t, product.id)).toMatchObject({ held: 0, expired: 1, remaining: 1 });

    const late = await t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token });
    expect(late.status).toBe(410);
    expect(late.body).toMatchObject({ code: 'HOLD_EXPIRED' });
    expect(await balanceOf(t, buyer.token)).toBe(5000);
    // The expiry's refund found no debit: its void keeps any debit still on its way from landing.
    expect(await ledgerOf(t, buyer.id)).toEqual([{ kind: 'void', order_id: order.id, amount_cents: 0 }]);
    expect((await t.api.call('POST', `/v1/orders/${order.id}/cancel`, { token: buyer.token })).body).toMatchObject({
      code: 'ORDER_NOT_CANCELLABLE',
      orderStatus: 'expired',
    });
    await expectInvariant(t.api, product.id, [bought]);

    const metrics = await t.api.call('GET', '/metrics');
    expect(String(metrics.body)).toMatch(/flashsale_holds_expired_total [1-9]/);
  });
});

describe('expiry across a restart, and expiry racing a payment', () => {
  let r: TestServer;
  const overrides = { sweepIntervalMs: 60_000, paymentDelayMs: 1500, rateLimitPerSecond: 3 };
  beforeAll(async () => {
    r = await startTestServer(overrides);
  });
  afterAll(async () => {
    await r?.stop();
  });

  it('returns holds that expired while the server was stopped, at start-up', async () => {
    const [buyer] = await r.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await r.api.createProduct({ stock: 3, holdSeconds: 1 });
    const answers = [await r.api.purchase(buyer.token, product.id, 2), await r.api.purchase(buyer.token, product.id, 1)];
    expect(answers.map((a) => a.status)).toEqual([201, 201]);
    await r.stop({ keepData: true });
    await sleep(1500);
    r = await startTestServer({ ...overrides, databasePrefix: r.config.databasePrefix });
    await waitFor(async () => (await stats(r, product.id))['remaining'] === 3);
    expect(await stats(r, product.id)).toMatchObject({ held: 0, expired: 3, remaining: 3 });
    for (const answer of answers) {
      const order = await r.api.call('GET', `/v1/orders/${orderOf(answer).id}`, { token: buyer.token });
      expect(orderOf(order).status).toBe('expired');
    }
    await expectInvariant(r.api, product.id, answers);
  });

  it('answers 410 for a hold past its expiry that the sweeper has not reached, and returns the unit at once', async () => {
    const [buyer] = await r.api.createBuyers(1, 5000);
    if (!buyer) throw new Error('no buyer');
    const product = await r.api.createProduct({ priceCents: 1000, stock: 1, holdSeconds: 1 });
    const bought = await r.api.purchase(buyer.token, product.id);
    await sleep(1200);
    const late = await r.api.call('POST', `/v1/orders/${orderOf(bought).id}/pay`, { token: buyer.token });
    expect(late.status).toBe(410);
    expect(await stats(r, product.id)).toMatchObject({ held: 0, expired: 1, remaining: 1 });
    expect(await balanceOf(r, buyer.token)).toBe(5000);
    expect(await ledgerOf(r, buyer.id)).toEqual([{ kind: 'void', order_id: orderOf(bought).id, amount_cents: 0 }]);
    await expectInvariant(r.api, product.id, [bought]);
  });

  it('refunds a debit whose hold expired during the payment delay: 410, balance unchanged, unit back', async () => {
    const [buyer] = await r.api.createBuyers(1, 5000);
    if (!buyer) throw new Error('no buyer');
    const product = await r.api.createProduct({ priceCents: 1000, stock: 1, holdSeconds: 1 });
    const bought = await r.api.purchase(buyer.token, product.id);
    const order = orderOf(bought);
    const late = await r.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token });
    expect(late.status).toBe(410);
    expect(late.body).toMatchObject({ code: 'HOLD_EXPIRED' });
    expect(await balanceOf(r, buyer.token)).toBe(5000);
    expect(await ledgerOf(r, buyer.id)).toEqual([
      { kind: 'debit', order_id: order.id, amount_cents: 1000 },
      { kind: 'refund', order_id: order.id, amount_cents: 1000 },
    ]);
    expect(await stats(r, product.id)).toMatchObject({ held: 0, paid: 0, remaining: 1 });
    await expectInvariant(r.api, product.id, [bought]);
  });

  it('rate-limits a buyer beyond RATE_LIMIT_PER_SECOND, and only that buyer', async () => {
    const [greedy, calm] = await r.api.createBuyers(2);
    if (!greedy || !calm) throw new Error('no buyers');
    const product = await r.api.createProduct({ stock: 100 });
    const answers = await storm(10, () => r.api.purchase(greedy.token, product.id));
    const limited = answers.filter((a) => a.status === 429);
    expect(limited.length).toBeGreaterThanOrEqual(4);
    expect(limited[0]?.body).toMatchObject({ code: 'RATE_LIMITED' });
    expect(limited[0]?.headers['retry-after']).toBe('1');
    expect((await r.api.purchase(calm.token, product.id)).status).toBe(201);
    await expectInvariant(r.api, product.id, answers);
  });
});

describe('admin', () => {
  it("lists a product's orders page by page, filtered by status", async () => {
    const buyers = await t.api.createBuyers(5, 10_000);
    const product = await t.api.createProduct({ stock: 10 });
    const ids: string[] = [];
    for (const buyer of buyers) ids.push(orderOf(await t.api.purchase(buyer.token, product.id)).id);
    const firstBuyer = buyers[0];
    if (!firstBuyer) throw new Error('no buyer');
    expect((await t.api.call('POST', `/v1/orders/${ids[0]}/pay`, { token: firstBuyer.token })).status).toBe(200);

    type Page = { orders: OrderBody[]; nextAfter: string | null };
    const first = await t.api.admin<Page>('GET', `/v1/admin/products/${product.id}/orders?limit=2`);
    expect(first.status).toBe(200);
    expect(first.body.nextAfter).toBe(first.body.orders[1]?.id);
    const rest = await t.api.admin<Page>('GET', `/v1/admin/products/${product.id}/orders?limit=2&after=${first.body.nextAfter}`);
    const last = await t.api.admin<Page>('GET', `/v1/admin/products/${product.id}/orders?limit=2&after=${rest.body.nextAfter}`);
    expect(last.body.orders).toHaveLength(1);
    expect(last.body.nextAfter).toBeNull();
    // Newest first, each order once.
    const seen = [...first.body.orders, ...rest.body.orders, ...last.body.orders].map((o) => o.id);
    expect(seen).toEqual([...ids].reverse());
    const paid = await t.api.admin<Page>('GET', `/v1/admin/products/${product.id}/orders?status=paid`);
    expect(paid.body.orders.map((o) => o.id)).toEqual([ids[0]]);
  });

  it('ends a sale early: later purchases get SALE_ENDED, existing holds stay payable', async () => {
    const [buyer, late] = await t.api.createBuyers(2, 10_000);
    if (!buyer || !late) throw new Error('no buyers');
    const product = await t.api.createProduct({ stock: 5 });
    const order = orderOf(await t.api.purchase(buyer.token, product.id));
    const ended = await t.api.admin('POST', `/v1/admin/products/${product.id}/end`);
    expect(ended.status).toBe(200);
    expect(ended.body['endedAt']).toEqual(expect.any(String));
    expect((await t.api.purchase(late.token, product.id)).body).toMatchObject({ code: 'SALE_ENDED' });
    expect((await t.api.call('POST', `/v1/orders/${order.id}/pay`, { token: buyer.token })).status).toBe(200);
  });

  it('bumps the version on every product change, so an optimistic write read before it fails', async () => {
    const product = await t.api.createProduct({ stock: 5 });
    const sql = t.server.system.stores.databases.inventory;
    const version = async (): Promise<number> =>
      Number((await sql<{ version: number }[]>`select version from products where id = ${product.id}`)[0]?.version);
    const start = await version();
    await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { priceCents: 999 });
    expect(await version()).toBe(start + 1);
    await t.api.admin('POST', `/v1/admin/products/${product.id}/end`);
    expect(await version()).toBe(start + 2);
  });
});

describe('operations', () => {
  it('exposes purchases by outcome, latency, remaining stock and holds expired at /metrics', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 1 });
    expect((await t.api.purchase(buyer.token, product.id)).status).toBe(201);
    expect((await t.api.purchase(buyer.token, product.id)).status).toBe(409);
    const answer = await t.api.call('GET', '/metrics');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toMatch(/^text\/plain/);
    const text = String(answer.body);
    expect(text).toMatch(/flashsale_purchases_total\{outcome="held"\} [1-9]/);
    expect(text).toMatch(/flashsale_purchases_total\{outcome="SOLD_OUT"\} [1-9]/);
    expect(text).toContain(`flashsale_remaining_stock{product_id="${product.id}",strategy="atomic"} 0`);
    expect(text).toMatch(/flashsale_http_request_duration_seconds_bucket\{[^}]*route="\/v1\/purchases"/);
    expect(text).toContain('flashsale_holds_expired_total');
  });

  it('documents every route in the OpenAPI document at /docs/json', async () => {
    const doc = await t.api.call<{ paths: Record<string, Record<string, unknown>> }>('GET', '/docs/json');
    expect(doc.status).toBe(200);
    for (const [path, method] of [
      ['/v1/purchases', 'post'],
      ['/v1/orders/{id}/pay', 'post'],
      ['/v1/orders/{id}/cancel', 'post'],
      ['/v1/orders/{id}', 'get'],
      ['/v1/admin/products/{id}/orders', 'get'],
      ['/v1/admin/products/{id}/end', 'post'],
      ['/v1/admin/users/{id}/credit', 'post'],
      ['/metrics', 'get'],
    ] as const) {
      expect(doc.body.paths[path]?.[method], `${method} ${path}`).toBeDefined();
    }
  });
});
