import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(async () => {
  await t?.stop();
});

describe('the buyer journey over HTTP', () => {
  it('signs up, finds the product, buys a unit and sees it on /me', async () => {
    const signUp = await t.api.call<{ id: string; token: string }>('POST', '/v1/users', { body: { name: 'Ada' } });
    expect(signUp.status).toBe(201);
    const { id: buyerId, token } = signUp.body;

    const product = await t.api.createProduct({ name: 'Front row', priceCents: 4200, stock: 3, perBuyerLimit: 2 });
    expect(product).toMatchObject({ name: 'Front row', priceCents: 4200, stock: 3, remaining: 3, perBuyerLimit: 2, strategy: 'atomic' });

    const listed = await t.api.call<{ products: { id: string }[] }>('GET', '/v1/products');
    expect(listed.body.products.map((p) => p.id)).toContain(product.id);

    const bought = await t.api.purchase(token, product.id, 2);
    expect(bought.status).toBe(201);
    const order = bought.body['order'] as Record<string, unknown>;
    expect(order).toMatchObject({ status: 'held', productId: product.id, quantity: 2, amountCents: 8400 });
    expect(Date.parse(order['expiresAt'] as string)).toBeGreaterThan(Date.now());

    const fetched = await t.api.call('GET', `/v1/products/${product.id}`);
    expect(fetched.body['remaining']).toBe(1);

    const me = await t.api.call<{ id: string; name: string; orders: { id: string }[] }>('GET', '/v1/me', { token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: buyerId, name: 'Ada' });
    expect(me.body.orders.map((o) => o.id)).toEqual([order['id']]);

    const own = await t.api.call('GET', `/v1/orders/${String(order['id'])}`, { token });
    expect(own.status).toBe(200);

    const stats = await t.api.admin('GET', `/v1/admin/products/${product.id}/stats`);
    expect(stats.body).toEqual({ stocked: 3, held: 2, paid: 0, remaining: 1, expired: 0, cancelled: 0 });
  });

  it('refuses with the reason: sold out (saying what remains), over the limit, not open, ended', async () => {
    const [buyer, other] = await t.api.createBuyers(2);
    if (!buyer || !other) throw new Error('no buyers');
    const product = await t.api.createProduct({ stock: 2, perBuyerLimit: 2 });

    const tooMany = await t.api.purchase(buyer.token, product.id, 3);
    expect(tooMany.status).toBe(409);
    expect(tooMany.body).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 2 });

    expect((await t.api.purchase(buyer.token, product.id, 1)).status).toBe(201);
    const soldOut = await t.api.purchase(other.token, product.id, 2);
    expect(soldOut.status).toBe(409);
    expect(soldOut.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(soldOut.body).toMatchObject({ code: 'SOLD_OUT', remaining: 1, status: 409 });

    const later = await t.api.createProduct({ stock: 5, opensAt: new Date(Date.now() + 3_600_000).toISOString() });
    const early = await t.api.purchase(buyer.token, later.id);
    expect(early.body).toMatchObject({ code: 'SALE_NOT_OPEN', opensAt: later['opensAt'] });

    const ended = await t.api.createProduct({ stock: 5 });
    expect((await t.api.admin('POST', `/v1/admin/products/${ended.id}/end`)).status).toBe(200);
    expect((await t.api.purchase(buyer.token, ended.id)).body).toMatchObject({ code: 'SALE_ENDED' });

    const missing = await t.api.purchase(buyer.token, '00000000-0000-4000-8000-000000000000');
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ code: 'PRODUCT_NOT_FOUND' });
  });

  it('adds stock, but never below what is allocated', async () => {
    const [buyer] = await t.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const product = await t.api.createProduct({ stock: 3 });
    expect((await t.api.purchase(buyer.token, product.id, 2)).status).toBe(201);

    const more = await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: 5 });
    expect(more.body).toMatchObject({ stock: 8, remaining: 6 });
    const tooFew = await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: -7 });
    expect(tooFew.status).toBe(409);
    expect(tooFew.body).toMatchObject({ code: 'INVALID_STOCK_CHANGE', remaining: 6 });
    const fewer = await t.api.admin('PATCH', `/v1/admin/products/${product.id}`, { addStock: -6 });
    expect(fewer.body).toMatchObject({ stock: 2, remaining: 0 });
    const audit = await t.api.audit(product.id);
    expect(audit.violations).toEqual([]);
  });

  it('creates 10,000 buyers in one call', async () => {
    const buyers = await t.api.createBuyers(10_000, 500);
    expect(buyers).toHaveLength(10_000);
    expect(new Set(buyers.map((b) => b.id)).size).toBe(10_000);
    const me = await t.api.call('GET', '/v1/me', { token: buyers[9_999]?.token ?? '' });
    expect(me.body).toMatchObject({ balanceCents: 500, orders: [] });
  });

  it('reports health, readiness and the default strategy', async () => {
    expect((await t.api.call('GET', '/healthz')).body).toMatchObject({ status: 'ok', strategy: 'atomic' });
    expect((await t.api.call('GET', '/readyz')).body).toEqual({ status: 'ready' });
  });
});
