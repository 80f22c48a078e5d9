/**
 * A table of bad requests across every route: each gets its 4xx and code, and no database
 * changes (row counts and a digest of every row of every table, in all three module databases,
 * are the same before and after the whole table).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../src/infra/database.js';
import type { Answer, CallOptions } from './support/api.js';
import { ADMIN_TOKEN, startTestServer, type TestServer } from './support/server.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

/** Every table of a database: its row count and a digest of all its rows. */
async function snapshot(sql: Sql): Promise<Record<string, string>> {
  const tables = await sql<{ name: string }[]>`
    select table_name as name from information_schema.tables
     where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`;
  const result: Record<string, string> = {};
  for (const { name } of tables) {
    const [row] = await sql.unsafe<{ n: string; digest: string }[]>(
      `select count(*)::text as n, md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as digest from "${name}" t`,
    );
    result[name] = `${row?.n}:${row?.digest}`;
  }
  return result;
}

async function snapshotAll(): Promise<Record<string, Record<string, string>>> {
  const { users, inventory, orders } = t.server.system.stores.databases;
  return { users: await snapshot(users), inventory: await snapshot(inventory), orders: await snapshot(orders) };
}

interface Case {
  readonly name: string;
  readonly method: string;
  readonly path: string;
  readonly options?: CallOptions;
  readonly status: number;
  readonly code: string;
}

const orderOf = (answer: Answer): string => (answer.body['order'] as { id: string }).id;
const NO_SUCH = '00000000-0000-4000-8000-000000000000';

describe('bad requests across every route', () => {
  it('each gets its 4xx and code, and every database is unchanged', async () => {
    const [a, b, poor] = await t.api.createBuyers(3, 10_000);
    if (!a || !b || !poor) throw new Error('no buyers');
    await t.server.system.stores.databases.users`update users set balance_cents = 0 where id = ${poor.id}`;
    const p = await t.api.createProduct({ priceCents: 1000, stock: 10, perBuyerLimit: 2 });
    const soldOut = await t.api.createProduct({ stock: 1 });
    const notOpen = await t.api.createProduct({ stock: 5, opensAt: new Date(Date.now() + 3_600_000).toISOString() });
    const ended = await t.api.createProduct({ stock: 5 });
    const short = await t.api.createProduct({ stock: 5, holdSeconds: 1 });
    await t.api.admin('POST', `/v1/admin/products/${ended.id}/end`);

    const held = orderOf(await t.api.purchase(a.token, p.id));
    const paid = orderOf(await t.api.purchase(a.token, p.id));
    expect((await t.api.call('POST', `/v1/orders/${paid}/pay`, { token: a.token })).status).toBe(200);
    const cancelled = orderOf(await t.api.purchase(b.token, p.id));
    expect((await t.api.call('POST', `/v1/orders/${cancelled}/cancel`, { token: b.token })).status).toBe(200);
    const poorHeld = orderOf(await t.api.purchase(poor.token, p.id));
    expect((await t.api.purchase(b.token, soldOut.id)).status).toBe(201);
    expect((await t.api.purchase(b.token, p.id, 1, { 'idempotency-key': 'k1' })).status).toBe(201);
    const expired = orderOf(await t.api.purchase(b.token, short.id));
    for (let i = 0; ; i += 1) {
      const order = await t.api.call('GET', `/v1/orders/${expired}`, { token: b.token });
      if ((order.body['order'] as { status: string }).status === 'expired') break;
      if (i > 100) throw new Error('the hold did not expire');
      await sleep(100);
    }

    const buy = (productId: string, quantity: unknown = 1): CallOptions => ({ token: a.token, body: { productId, quantity } });
    const cases: Case[] = [
      { name: 'purchase without a token', method: 'POST', path: '/v1/purchases', options: { body: { productId: p.id, quantity: 1 } }, status: 401, code: 'UNAUTHORIZED' },
      { name: 'purchase with a forged token', method: 'POST', path: '/v1/purchases', options: { token: `${a.id}.forged`, body: { productId: p.id, quantity: 1 } }, status: 401, code: 'UNAUTHORIZED' },
      { name: 'purchase with a malformed Authorization header', method: 'POST', path: '/v1/purchases', options: { headers: { authorization: 'Basic abc' }, body: { productId: p.id, quantity: 1 } }, status: 401, code: 'UNAUTHORIZED' },
      { name: 'purchase without quantity', method: 'POST', path: '/v1/purchases', options: { token: a.token, body: { productId: p.id } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase of 0 units', method: 'POST', path: '/v1/purchases', options: buy(p.id, 0), status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase of 1001 units', method: 'POST', path: '/v1/purchases', options: buy(p.id, 1001), status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase with a string quantity', method: 'POST', path: '/v1/purchases', options: buy(p.id, '1'), status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase with a fractional quantity', method: 'POST', path: '/v1/purchases', options: buy(p.id, 1.5), status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase of a non-uuid product', method: 'POST', path: '/v1/purchases', options: buy('product-1'), status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase with an unknown member', method: 'POST', path: '/v1/purchases', options: { token: a.token, body: { productId: p.id, quantity: 1, coupon: 'x' } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase with a non-boolean pay', method: 'POST', path: '/v1/purchases', options: { token: a.token, body: { productId: p.id, quantity: 1, pay: 'yes' } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase with malformed JSON', method: 'POST', path: '/v1/purchases', options: { token: a.token, rawBody: '{"productId":', headers: { 'content-type': 'application/json' } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase as application/xml', method: 'POST', path: '/v1/purchases', options: { token: a.token, rawBody: '<buy/>', headers: { 'content-type': 'application/xml' } }, status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { name: 'purchase with a body over the limit', method: 'POST', path: '/v1/purchases', options: { token: a.token, rawBody: `{"x":"${'a'.repeat(1_100_000)}"}`, headers: { 'content-type': 'application/json' } }, status: 413, code: 'PAYLOAD_TOO_LARGE' },
      { name: 'purchase with an over-long Idempotency-Key', method: 'POST', path: '/v1/purchases', options: { ...buy(p.id), headers: { 'idempotency-key': 'k'.repeat(201) } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'purchase reusing a key for another body', method: 'POST', path: '/v1/purchases', options: { token: b.token, body: { productId: p.id, quantity: 2 }, headers: { 'idempotency-key': 'k1' } }, status: 422, code: 'IDEMPOTENCY_KEY_REUSED' },
      { name: 'purchase of an unknown product', method: 'POST', path: '/v1/purchases', options: buy(NO_SUCH), status: 404, code: 'PRODUCT_NOT_FOUND' },
      { name: 'purchase of a sold-out product', method: 'POST', path: '/v1/purchases', options: buy(soldOut.id), status: 409, code: 'SOLD_OUT' },
      { name: 'purchase before the sale opens', method: 'POST', path: '/v1/purchases', options: buy(notOpen.id), status: 409, code: 'SALE_NOT_OPEN' },
      { name: 'purchase after the sale ended', method: 'POST', path: '/v1/purchases', options: buy(ended.id), status: 409, code: 'SALE_ENDED' },
      { name: 'purchase over the per-buyer limit', method: 'POST', path: '/v1/purchases', options: buy(p.id), status: 409, code: 'LIMIT_EXCEEDED' },
      { name: 'instant purchase over the per-buyer limit', method: 'POST', path: '/v1/purchases', options: { token: a.token, body: { productId: p.id, quantity: 1, pay: true } }, status: 409, code: 'LIMIT_EXCEEDED' },
      { name: 'pay without a token', method: 'POST', path: `/v1/orders/${held}/pay`, status: 401, code: 'UNAUTHORIZED' },
      { name: 'pay a non-uuid order', method: 'POST', path: '/v1/orders/42/pay', options: { token: a.token }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'pay an unknown order', method: 'POST', path: `/v1/orders/${NO_SUCH}/pay`, options: { token: a.token }, status: 404, code: 'ORDER_NOT_FOUND' },
      { name: "pay another buyer's order", method: 'POST', path: `/v1/orders/${held}/pay`, options: { token: b.token }, status: 404, code: 'ORDER_NOT_FOUND' },
      { name: 'pay without the funds', method: 'POST', path: `/v1/orders/${poorHeld}/pay`, options: { token: poor.token }, status: 402, code: 'INSUFFICIENT_FUNDS' },
      { name: 'pay a cancelled order', method: 'POST', path: `/v1/orders/${cancelled}/pay`, options: { token: b.token }, status: 409, code: 'ORDER_NOT_PAYABLE' },
      { name: 'pay a paid order again', method: 'POST', path: `/v1/orders/${paid}/pay`, options: { token: a.token }, status: 409, code: 'ORDER_ALREADY_PAID' },
      { name: 'pay an expired order', method: 'POST', path: `/v1/orders/${expired}/pay`, options: { token: b.token }, status: 410, code: 'HOLD_EXPIRED' },
      { name: 'pay with an empty Idempotency-Key', method: 'POST', path: `/v1/orders/${held}/pay`, options: { token: a.token, headers: { 'idempotency-key': '' } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'cancel a paid order', method: 'POST', path: `/v1/orders/${paid}/cancel`, options: { token: a.token }, status: 409, code: 'ORDER_NOT_CANCELLABLE' },
      { name: 'cancel an expired order', method: 'POST', path: `/v1/orders/${expired}/cancel`, options: { token: b.token }, status: 409, code: 'ORDER_NOT_CANCELLABLE' },
      { name: "cancel another buyer's order", method: 'POST', path: `/v1/orders/${held}/cancel`, options: { token: b.token }, status: 404, code: 'ORDER_NOT_FOUND' },
      { name: "get another buyer's order", method: 'GET', path: `/v1/orders/${held}`, options: { token: b.token }, status: 404, code: 'ORDER_NOT_FOUND' },
      { name: 'get a non-uuid order', method: 'GET', path: '/v1/orders/abc', options: { token: a.token }, status: 400, code: 'VALIDATION_FAILED' },
      { name: '/v1/me without a token', method: 'GET', path: '/v1/me', status: 401, code: 'UNAUTHORIZED' },
      { name: 'sign up with an empty name', method: 'POST', path: '/v1/users', options: { body: { name: '' } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'sign up with a blank name', method: 'POST', path: '/v1/users', options: { body: { name: '   ' } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'admin route with a buyer token', method: 'POST', path: '/v1/admin/products', options: { token: a.token, body: { name: 'x', priceCents: 1, stock: 1 } }, status: 403, code: 'FORBIDDEN' },
      { name: 'product with negative stock', method: 'POST', path: '/v1/admin/products', options: { token: ADMIN_TOKEN, body: { name: 'x', priceCents: 1, stock: -1 } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'product closing before it opens', method: 'POST', path: '/v1/admin/products', options: { token: ADMIN_TOKEN, body: { name: 'x', priceCents: 1, stock: 1, opensAt: '2030-01-02T00:00:00Z', closesAt: '2030-01-01T00:00:00Z' } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'remove more stock than is free', method: 'PATCH', path: `/v1/admin/products/${p.id}`, options: { token: ADMIN_TOKEN, body: { addStock: -100 } }, status: 409, code: 'INVALID_STOCK_CHANGE' },
      { name: 'end an unknown product', method: 'POST', path: `/v1/admin/products/${NO_SUCH}/end`, options: { token: ADMIN_TOKEN }, status: 404, code: 'PRODUCT_NOT_FOUND' },
      { name: 'credit zero cents', method: 'POST', path: `/v1/admin/users/${a.id}/credit`, options: { token: ADMIN_TOKEN, body: { amountCents: 0 } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'credit an unknown user', method: 'POST', path: `/v1/admin/users/${NO_SUCH}/credit`, options: { token: ADMIN_TOKEN, body: { amountCents: 100 } }, status: 404, code: 'USER_NOT_FOUND' },
      { name: 'credit as a buyer', method: 'POST', path: `/v1/admin/users/${a.id}/credit`, options: { token: a.token, body: { amountCents: 100 } }, status: 403, code: 'FORBIDDEN' },
      { name: 'list orders with a non-numeric limit', method: 'GET', path: `/v1/admin/products/${p.id}/orders?limit=ten`, options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'list orders with limit 0', method: 'GET', path: `/v1/admin/products/${p.id}/orders?limit=0`, options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'list orders with a limit over 500', method: 'GET', path: `/v1/admin/products/${p.id}/orders?limit=501`, options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'list orders by offset (paging is by after)', method: 'GET', path: `/v1/admin/products/${p.id}/orders?offset=100000`, options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'list orders after a malformed id', method: 'GET', path: `/v1/admin/products/${p.id}/orders?after=12`, options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'list orders after an order of no such product', method: 'GET', path: `/v1/admin/products/${p.id}/orders?after=${NO_SUCH}`, options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'list orders with an unknown status', method: 'GET', path: `/v1/admin/products/${p.id}/orders?status=lost`, options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'list orders of an unknown product', method: 'GET', path: `/v1/admin/products/${NO_SUCH}/orders`, options: { token: ADMIN_TOKEN }, status: 404, code: 'PRODUCT_NOT_FOUND' },
      { name: 'create 0 buyers', method: 'POST', path: '/v1/admin/users', options: { token: ADMIN_TOKEN, body: { count: 0, balanceCents: 0 } }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'audit without a product', method: 'GET', path: '/v1/admin/audit', options: { token: ADMIN_TOKEN }, status: 400, code: 'VALIDATION_FAILED' },
      { name: 'an unknown route', method: 'GET', path: '/v1/nothing-here', status: 404, code: 'NOT_FOUND' },
    ];
    expect(cases.length).toBeGreaterThanOrEqual(30);

    const before = await snapshotAll();
    const wrong: string[] = [];
    for (const c of cases) {
      const answer = await t.api.call(c.method, c.path, c.options);
      const code = typeof answer.body === 'object' ? answer.body['code'] : undefined;
      if (answer.status !== c.status || code !== c.code) {
        wrong.push(`${c.name}: got ${answer.status} ${String(code)}, want ${c.status} ${c.code}`);
      } else if (!String(answer.headers['content-type']).startsWith('application/problem+json')) {
        wrong.push(`${c.name}: not application/problem+json`);
      }
    }
    expect(wrong).toEqual([]);
    expect(await snapshotAll()).toEqual(before);
  });
});
