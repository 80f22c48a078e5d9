/**
 * The OpenAPI document at /docs/json is the HTTP contract: valid OpenAPI 3, every operation with
 * its success body and its problems (`application/problem+json`, the codes it can answer with),
 * shared schemas in `components`. Then every route is driven through its success and the problems
 * a test can provoke, and each answer must be one the document lists, with the media type it
 * names. (Every other test server checks its own answers the same way when it stops.)
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROBLEM_MEDIA_TYPE } from '../src/http/response-schemas.js';
import { ERROR_CODES, type ErrorCode } from '../src/infra/errors.js';
import type { Answer, CallOptions } from './support/api.js';
import { documentedCodes, type OpenApiDocument, type Operation } from './support/contract.js';
import { startTestServer, type TestServer } from './support/server.js';

/** Purchases and payments per buyer per second: above what one buyer here sends, except in the burst. */
const RATE_LIMIT = 10;

let t: TestServer;
let document: OpenApiDocument;
beforeAll(async () => {
  t = await startTestServer({ rateLimitPerSecond: RATE_LIMIT });
  document = (await t.api.call<OpenApiDocument>('GET', '/docs/json')).body;
});
afterAll(async () => {
  await t?.stop();
});

function operations(): [string, Operation][] {
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]): [string, Operation] => [`${method} ${path}`, operation]),
  );
}

describe('the OpenAPI document', () => {
  it('is a valid OpenAPI 3 document', async () => {
    const result = await new Validator().validate(structuredClone(document) as unknown as Record<string, unknown>);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(document.openapi).toMatch(/^3\./);
  });

  it('describes a success body and problem documents for every operation', () => {
    expect(operations().length).toBeGreaterThanOrEqual(20);
    for (const [name, operation] of operations()) {
      const statuses = Object.keys(operation.responses);
      const successes = statuses.filter((status) => /^2\d\d$/.test(status));
      expect(successes, `${name}: a 2xx`).toHaveLength(1);
      for (const status of successes) {
        const content = operation.responses[status]?.content ?? {};
        expect(Object.keys(content), `${name} ${status}`).toHaveLength(1);
        expect(Object.values(content)[0]?.schema, `${name} ${status}: a schema`).toBeDefined();
      }
      // Every route: the in-flight limit refuses before routing, and faults happen anywhere.
      expect(statuses, name).toEqual(expect.arrayContaining(['500', '503']));
      if (operation.parameters?.length || operation.requestBody) expect(statuses, `${name}: validation`).toContain('400');
      if (operation.security) expect(statuses, `${name}: its guard`).toContain('401');
      for (const status of statuses.filter((s) => Number(s) >= 400)) {
        const response = operation.responses[status];
        expect(Object.keys(response?.content ?? {}), `${name} ${status}`).toEqual([PROBLEM_MEDIA_TYPE]);
        const codes = response ? documentedCodes(response) : undefined;
        expect(codes?.length, `${name} ${status}: its codes`).toBeGreaterThan(0);
        for (const code of codes ?? []) {
          expect(ERROR_CODES[code as ErrorCode]?.status, `${name} ${status}: ${code}`).toBe(Number(status));
          expect(response?.description, `${name} ${status}: says what ${code} means`).toContain(code);
        }
      }
    }
  });

  it('says when to retry: Retry-After on every 503 and 429, and on a CONTENTION 409', () => {
    for (const [name, operation] of operations()) {
      for (const [status, response] of Object.entries(operation.responses)) {
        const retrying = status === '503' || status === '429' || (documentedCodes(response) ?? []).includes('CONTENTION');
        if (retrying) expect(Object.keys(response.headers ?? {}), `${name} ${status}`).toContain('Retry-After');
      }
    }
    const purchase = document.paths['/v1/purchases']?.['post'];
    expect(Object.keys(purchase?.responses['201']?.headers ?? {})).toContain('Idempotent-Replayed');
  });

  it('shares its schemas once, in components, and lists every error code in Problem', () => {
    const schemas = document.components?.schemas ?? {};
    for (const name of ['Problem', 'Order', 'OrderAnswer', 'OrdersPage', 'Product', 'ProductStats', 'StockEvent', 'StockEventsPage', 'User', 'AccessToken', 'IssuedUser', 'AuditReport']) {
      expect(schemas[name], name).toBeDefined();
    }
    expect(schemas['Problem']?.properties?.['code']?.enum).toEqual(Object.keys(ERROR_CODES));
    expect(schemas['Problem']?.['additionalProperties']).toBe(true);
    const purchased = document.paths['/v1/purchases']?.['post']?.responses['201']?.content?.['application/json']?.schema;
    expect(purchased).toEqual({ $ref: '#/components/schemas/OrderAnswer' });
  });
});

describe('every route', () => {
  /** Calls and checks the answer: the status expected, documented, in the media type documented. */
  async function expectAnswer(
    method: string,
    route: string,
    path: string,
    status: number,
    options: CallOptions = {},
    code?: ErrorCode,
  ): Promise<Answer> {
    const answer = await t.api.call(method, path, options);
    const name = `${method} ${path}`;
    expect(answer.status, `${name}: ${JSON.stringify(answer.body)}`).toBe(status);
    const response = document.paths[route]?.[method.toLowerCase()]?.responses[String(status)];
    expect(response, `${name} ${status} is documented`).toBeDefined();
    const mediaType = String(answer.headers['content-type']).split(';')[0] ?? '';
    expect(Object.keys(response?.content ?? {}), `${name} ${status}: media type`).toContain(mediaType);
    if (status >= 400) {
      expect(answer.body, name).toMatchObject({ code, status });
      expect(response ? documentedCodes(response) : [], `${name} ${status}`).toContain(code);
    }
    return answer;
  }

  it('answers what the document says, for each route through its success and its problems', async () => {
    const admin = t.api.adminToken;
    const [buyer, poor, limited, payer, canceller] = await t.api.createBuyers(5);
    const [broke] = await t.api.createBuyers(1, 0);
    if (!buyer || !poor || !limited || !payer || !canceller || !broke) throw new Error('no buyers');
    const nobody = randomUUID();
    const strangerToken = t.server.system.tokens.sign({ userId: nobody, sessionId: randomUUID(), expiresAtMs: Date.now() + 3_600_000 });
    const malformed = '42';

    await expectAnswer('GET', '/healthz', '/healthz', 200);
    await expectAnswer('GET', '/readyz', '/readyz', 200);
    await expectAnswer('GET', '/metrics', '/metrics', 200);

    // Users.
    const signedUp = await expectAnswer('POST', '/v1/users', '/v1/users', 201, { body: { name: 'ada' } });
    expect(Object.keys(signedUp.body).sort()).toEqual(['expiresAt', 'id', 'refreshToken', 'token']);
    await expectAnswer('POST', '/v1/users', '/v1/users', 400, { body: { name: '' } }, 'VALIDATION_FAILED');
    await expectAnswer('POST', '/v1/users', '/v1/users', 413, { body: { name: 'x'.repeat(2 * 1024 * 1024) } }, 'PAYLOAD_TOO_LARGE');
    await expectAnswer('POST', '/v1/users', '/v1/users', 415, { rawBody: 'name=ada', headers: { 'content-type': 'text/plain' } }, 'UNSUPPORTED_MEDIA_TYPE');
    await expectAnswer('POST', '/v1/admin/users', '/v1/admin/users', 201, { token: admin, body: { count: 2, balanceCents: 0 } });
    await expectAnswer('POST', '/v1/admin/users', '/v1/admin/users', 400, { token: admin, body: { count: 0, balanceCents: 0 } }, 'VALIDATION_FAILED');
    await expectAnswer('POST', '/v1/admin/users', '/v1/admin/users', 401, { body: { count: 1, balanceCents: 0 } }, 'UNAUTHORIZED');
    await expectAnswer('POST', '/v1/admin/users', '/v1/admin/users', 403, { token: buyer.token, body: { count: 1, balanceCents: 0 } }, 'FORBIDDEN');
    const credit = '/v1/admin/users/{id}/credit';
    const credited = await expectAnswer('POST', credit, `/v1/admin/users/${buyer.id}/credit`, 200, { token: admin, body: { amountCents: 1 } });
    expect(Object.keys(credited.body['user'] as object).sort()).toEqual(['balanceCents', 'createdAt', 'id', 'name']);
    await expectAnswer('POST', credit, `/v1/admin/users/${malformed}/credit`, 400, { token: admin, body: { amountCents: 1 } }, 'VALIDATION_FAILED');
    await expectAnswer('POST', credit, `/v1/admin/users/${nobody}/credit`, 404, { token: admin, body: { amountCents: 1 } }, 'USER_NOT_FOUND');
    await expectAnswer('GET', '/v1/me', '/v1/me', 200, { token: buyer.token });
    await expectAnswer('GET', '/v1/me', '/v1/me', 401, {}, 'UNAUTHORIZED');
    await expectAnswer('GET', '/v1/me', '/v1/me', 404, { token: strangerToken }, 'USER_NOT_FOUND');
    const expiredToken = t.server.system.tokens.sign({ userId: buyer.id, sessionId: randomUUID(), expiresAtMs: Date.now() - 1 });
    await expectAnswer('GET', '/v1/me', '/v1/me', 401, { token: expiredToken }, 'TOKEN_EXPIRED');

    // Sessions: refresh, sign out, revoke.
    const refreshToken = String(signedUp.body['refreshToken']);
    const refreshed = await expectAnswer('POST', '/v1/tokens', '/v1/tokens', 200, { body: { refreshToken } });
    expect(Object.keys(refreshed.body).sort()).toEqual(['expiresAt', 'token']);
    expect(refreshed.headers['cache-control']).toBe('no-store');
    expect(signedUp.headers['cache-control']).toBe('no-store');
    await expectAnswer('POST', '/v1/tokens', '/v1/tokens', 400, { body: { refreshToken: '' } }, 'VALIDATION_FAILED');
    await expectAnswer('POST', '/v1/tokens', '/v1/tokens', 401, { body: { refreshToken: 'not-one-of-ours' } }, 'UNAUTHORIZED');
    const signOut = '/v1/me/sign-out';
    const out = await expectAnswer('POST', signOut, signOut, 200, { token: String(refreshed.body['token']) });
    expect(out.body).toEqual({ revokedSessions: 1 });
    await expectAnswer('POST', signOut, signOut, 401, { token: String(signedUp.body['token']) }, 'TOKEN_REVOKED');
    await expectAnswer('POST', signOut, signOut, 401, {}, 'UNAUTHORIZED');
    await expectAnswer('POST', '/v1/tokens', '/v1/tokens', 401, { body: { refreshToken } }, 'TOKEN_REVOKED');
    const revoke = '/v1/admin/users/{id}/revoke';
    const [revokedBuyer] = await t.api.createBuyers(1);
    const revokedAll = await expectAnswer('POST', revoke, `/v1/admin/users/${revokedBuyer?.id ?? ''}/revoke`, 200, { token: admin });
    expect(revokedAll.body).toEqual({ revokedSessions: 1 });
    await expectAnswer('POST', revoke, `/v1/admin/users/${nobody}/revoke`, 404, { token: admin }, 'USER_NOT_FOUND');
    await expectAnswer('POST', revoke, `/v1/admin/users/${malformed}/revoke`, 400, { token: admin }, 'VALIDATION_FAILED');
    await expectAnswer('POST', revoke, `/v1/admin/users/${buyer.id}/revoke`, 403, { token: buyer.token }, 'FORBIDDEN');

    // Products.
    const created = await expectAnswer('POST', '/v1/admin/products', '/v1/admin/products', 201, {
      token: admin,
      body: { name: 'contract', priceCents: 100, stock: 4, perBuyerLimit: 2 },
    });
    const productId = String(created.body['id']);
    await expectAnswer('POST', '/v1/admin/products', '/v1/admin/products', 400, { token: admin, body: { name: 'x' } }, 'VALIDATION_FAILED');
    await expectAnswer(
      'POST', '/v1/admin/products', '/v1/admin/products', 400,
      { token: admin, body: { name: 'x', priceCents: 1, stock: 1, strategy: 'redis-lua' } }, 'STRATEGY_UNAVAILABLE',
    );
    await expectAnswer('POST', '/v1/admin/products', '/v1/admin/products', 401, { body: { name: 'x', priceCents: 1, stock: 1 } }, 'UNAUTHORIZED');
    await expectAnswer('GET', '/v1/products', '/v1/products', 200);
    const one = '/v1/products/{id}';
    const fetched = await expectAnswer('GET', one, `/v1/products/${productId}`, 200);
    expect(fetched.body).toEqual(created.body);
    await expectAnswer('GET', one, `/v1/products/${malformed}`, 400, {}, 'VALIDATION_FAILED');
    await expectAnswer('GET', one, `/v1/products/${nobody}`, 404, {}, 'PRODUCT_NOT_FOUND');
    const change = '/v1/admin/products/{id}';
    await expectAnswer('PATCH', change, `/v1/admin/products/${productId}`, 200, { token: admin, body: { addStock: 1 } });
    await expectAnswer('PATCH', change, `/v1/admin/products/${productId}`, 400, { token: admin, body: {} }, 'VALIDATION_FAILED');
    await expectAnswer('PATCH', change, `/v1/admin/products/${productId}`, 403, { token: buyer.token, body: { addStock: 1 } }, 'FORBIDDEN');
    await expectAnswer('PATCH', change, `/v1/admin/products/${nobody}`, 404, { token: admin, body: { addStock: 1 } }, 'PRODUCT_NOT_FOUND');
    await expectAnswer('PATCH', change, `/v1/admin/products/${productId}`, 409, { token: admin, body: { addStock: -100 } }, 'INVALID_STOCK_CHANGE');
    const stats = '/v1/admin/products/{id}/stats';
    await expectAnswer('GET', stats, `/v1/admin/products/${productId}/stats`, 200, { token: admin });
    await expectAnswer('GET', stats, `/v1/admin/products/${nobody}/stats`, 404, { token: admin }, 'PRODUCT_NOT_FOUND');
    await expectAnswer('GET', stats, `/v1/admin/products/${productId}/stats`, 401, { token: 'forged' }, 'UNAUTHORIZED');
    const events = '/v1/admin/products/{id}/events';
    const logged = await t.api.createProduct({ stock: 2, strategy: 'event-sourced' });
    const history = await expectAnswer('GET', events, `/v1/admin/products/${logged.id}/events?after=0&limit=10`, 200, { token: admin });
    expect(history.body).toMatchObject({ events: [{ seq: 1, kind: 'stocked', units: 2, allocationId: null, buyerId: null }], nextAfter: null });
    expect(Object.keys((history.body['events'] as object[])[0] ?? {}).sort()).toEqual(['allocationId', 'at', 'buyerId', 'kind', 'seq', 'units']);
    await expectAnswer('GET', events, `/v1/admin/products/${logged.id}/events?limit=0`, 400, { token: admin }, 'VALIDATION_FAILED');
    await expectAnswer('GET', events, `/v1/admin/products/${nobody}/events`, 404, { token: admin }, 'PRODUCT_NOT_FOUND');
    await expectAnswer('GET', events, `/v1/admin/products/${logged.id}/events`, 403, { token: buyer.token }, 'FORBIDDEN');

    // Purchases: each buyer stays under the rate limit, except the one who provokes it.
    const buy = (token: string, body: Record<string, unknown>, headers: Record<string, string> = {}): CallOptions => ({ token, body, headers });
    const bought = await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 201, buy(buyer.token, { productId, quantity: 1 }, { 'idempotency-key': 'k1' }));
    const replayed = await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 201, buy(buyer.token, { productId, quantity: 1 }, { 'idempotency-key': 'k1' }));
    expect(replayed.headers['idempotent-replayed']).toBe('true');
    expect(replayed.body).toEqual(bought.body);
    expect(Object.keys(bought.body['order'] as object).sort()).toEqual(
      ['amountCents', 'buyerId', 'createdAt', 'expiresAt', 'id', 'productId', 'quantity', 'status'],
    );
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 422, buy(buyer.token, { productId, quantity: 2 }, { 'idempotency-key': 'k1' }), 'IDEMPOTENCY_KEY_REUSED');
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 400, buy(buyer.token, { productId, quantity: 0 }), 'VALIDATION_FAILED');
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 401, { body: { productId, quantity: 1 } }, 'UNAUTHORIZED');
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 404, buy(poor.token, { productId: nobody, quantity: 1 }), 'PRODUCT_NOT_FOUND');
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 409, buy(poor.token, { productId, quantity: 3 }), 'LIMIT_EXCEEDED');
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 402, buy(broke.token, { productId, quantity: 1, pay: true }), 'INSUFFICIENT_FUNDS');
    const later = await t.api.createProduct({ stock: 1, opensAt: '2099-01-01T00:00:00Z' });
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 409, buy(poor.token, { productId: later.id, quantity: 1 }), 'SALE_NOT_OPEN');
    const ended = await t.api.createProduct({ stock: 1 });
    await expectAnswer('POST', '/v1/admin/products/{id}/end', `/v1/admin/products/${ended.id}/end`, 200, { token: admin });
    await expectAnswer('POST', '/v1/admin/products/{id}/end', `/v1/admin/products/${nobody}/end`, 404, { token: admin }, 'PRODUCT_NOT_FOUND');
    await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 409, buy(payer.token, { productId: ended.id, quantity: 1 }), 'SALE_ENDED');

    // A stored refusal comes back as it was sent: every member, its media type, marked replayed.
    const gone = await t.api.createProduct({ stock: 0 });
    const soldOut = await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 409, buy(canceller.token, { productId: gone.id, quantity: 1 }, { 'idempotency-key': 'k2' }), 'SOLD_OUT');
    const soldOutAgain = await expectAnswer('POST', '/v1/purchases', '/v1/purchases', 409, buy(canceller.token, { productId: gone.id, quantity: 1 }, { 'idempotency-key': 'k2' }), 'SOLD_OUT');
    expect(soldOut.body).toMatchObject({ remaining: 0, productId: gone.id });
    expect(soldOutAgain.body).toEqual(soldOut.body);
    expect(soldOutAgain.headers['idempotent-replayed']).toBe('true');

    const burst = await Promise.all(
      // Even spread over three one-second windows, one of them is over the limit.
      Array.from({ length: 4 * RATE_LIMIT }, () => t.api.call('POST', '/v1/purchases', buy(limited.token, { productId: gone.id, quantity: 1 }))),
    );
    const limitedAnswer = burst.find((answer) => answer.status === 429);
    expect(limitedAnswer?.body).toMatchObject({ code: 'RATE_LIMITED', limit: RATE_LIMIT });
    expect(limitedAnswer?.headers['retry-after']).toBe('1');

    // Orders: pay, cancel, read, list.
    const order = (answer: Answer): string => (answer.body['order'] as { id: string }).id;
    const pay = '/v1/orders/{id}/pay';
    const toPay = await t.api.purchase(payer.token, productId);
    await expectAnswer('POST', pay, `/v1/orders/${order(toPay)}/pay`, 200, { token: payer.token });
    await expectAnswer('POST', pay, `/v1/orders/${order(toPay)}/pay`, 409, { token: payer.token }, 'ORDER_ALREADY_PAID');
    await expectAnswer('POST', pay, `/v1/orders/${nobody}/pay`, 404, { token: payer.token }, 'ORDER_NOT_FOUND');
    await expectAnswer('POST', pay, `/v1/orders/${malformed}/pay`, 400, { token: payer.token }, 'VALIDATION_FAILED');
    await expectAnswer('POST', pay, `/v1/orders/${order(toPay)}/pay`, 401, {}, 'UNAUTHORIZED');
    await expectAnswer('POST', pay, `/v1/orders/${order(bought)}/pay`, 422, { token: buyer.token, headers: { 'idempotency-key': 'k1' } }, 'IDEMPOTENCY_KEY_REUSED');
    const unpaid = await t.api.purchase(broke.token, productId);
    await expectAnswer('POST', pay, `/v1/orders/${order(unpaid)}/pay`, 402, { token: broke.token }, 'INSUFFICIENT_FUNDS');

    const cancel = '/v1/orders/{id}/cancel';
    await expectAnswer('POST', cancel, `/v1/orders/${order(unpaid)}/cancel`, 200, { token: broke.token });
    await expectAnswer('POST', pay, `/v1/orders/${order(unpaid)}/pay`, 409, { token: broke.token }, 'ORDER_NOT_PAYABLE');
    await expectAnswer('POST', cancel, `/v1/orders/${order(toPay)}/cancel`, 409, { token: payer.token }, 'ORDER_NOT_CANCELLABLE');
    await expectAnswer('POST', cancel, `/v1/orders/${nobody}/cancel`, 404, { token: payer.token }, 'ORDER_NOT_FOUND');

    const read = '/v1/orders/{id}';
    await expectAnswer('GET', read, `/v1/orders/${order(toPay)}`, 200, { token: payer.token });
    await expectAnswer('GET', read, `/v1/orders/${order(toPay)}`, 404, { token: buyer.token }, 'ORDER_NOT_FOUND');
    await expectAnswer('GET', read, `/v1/orders/${malformed}`, 400, { token: buyer.token }, 'VALIDATION_FAILED');

    const list = '/v1/admin/products/{id}/orders';
    const page = await expectAnswer('GET', list, `/v1/admin/products/${productId}/orders?limit=1`, 200, { token: admin });
    expect(page.body).toMatchObject({ nextAfter: expect.any(String) });
    await expectAnswer('GET', list, `/v1/admin/products/${productId}/orders?limit=501`, 400, { token: admin }, 'VALIDATION_FAILED');
    await expectAnswer('GET', list, `/v1/admin/products/${nobody}/orders`, 404, { token: admin }, 'PRODUCT_NOT_FOUND');

    // The admin's tools.
    const audit = await expectAnswer('GET', '/v1/admin/audit', `/v1/admin/audit?productId=${productId}`, 200, { token: admin });
    expect(audit.body).toMatchObject({ ok: true, violations: [] });
    await expectAnswer('GET', '/v1/admin/audit', '/v1/admin/audit', 400, { token: admin }, 'VALIDATION_FAILED');
    await expectAnswer('GET', '/v1/admin/audit', `/v1/admin/audit?productId=${nobody}`, 404, { token: admin }, 'PRODUCT_NOT_FOUND');
    await expectAnswer('GET', '/v1/admin/audit', `/v1/admin/audit?productId=${productId}`, 403, { token: buyer.token }, 'FORBIDDEN');
    const missing = '/v1/admin/orders/missing';
    const found = await expectAnswer('POST', missing, missing, 200, { token: admin, body: { ids: [order(toPay), nobody] } });
    expect(found.body).toEqual({ missing: [nobody] });
    await expectAnswer('POST', missing, missing, 400, { token: admin, rawBody: '{"ids": [', headers: { 'content-type': 'application/json' } }, 'VALIDATION_FAILED');
    const orderEvents = '/v1/admin/order-events';
    const feed = await expectAnswer('GET', orderEvents, `${orderEvents}?after=0&limit=1`, 200, { token: admin });
    expect(feed.body).toMatchObject({ events: [{ kind: 'held', orderId: order(bought), order: bought.body['order'] }] });
    expect(Object.keys((feed.body['events'] as object[])[0] ?? {}).sort()).toEqual(['id', 'kind', 'occurredAt', 'order', 'orderId', 'seq']);
    await expectAnswer('GET', orderEvents, `${orderEvents}?limit=1001`, 400, { token: admin }, 'VALIDATION_FAILED');
    await expectAnswer('GET', orderEvents, orderEvents, 403, { token: buyer.token }, 'FORBIDDEN');

    // A hold that lapses before it is paid (the slowest case: a second's hold).
    const brief = await t.api.createProduct({ stock: 1, holdSeconds: 1 });
    const lapsing = await t.api.purchase(canceller.token, brief.id);
    await sleep(1_100);
    await expectAnswer('POST', pay, `/v1/orders/${order(lapsing)}/pay`, 410, { token: canceller.token }, 'HOLD_EXPIRED');

    // What the server logged matches: every route answered with a success, nothing undocumented.
    expect(t.answers.undocumented(document)).toEqual([]);
    const succeeded = new Set(t.answers.answers().filter((answer) => / 2\d\d$/.test(answer)).map((answer) => answer.split(' ').slice(0, 2).join(' ')));
    expect(operations().map(([name]) => name).filter((name) => !succeeded.has(name))).toEqual([]);
  });

  it('names an answer the document does not list (the check every test server makes as it stops)', async () => {
    const [broke] = await t.api.createBuyers(1, 0);
    if (!broke) throw new Error('no buyer');
    const gone = await t.api.createProduct({ stock: 0 });
    expect((await t.api.call('POST', '/v1/purchases', { token: broke.token, body: { productId: gone.id, quantity: 1 } })).status).toBe(409);
    const scarce = await t.api.createProduct({ stock: 1 });
    const instant = { productId: scarce.id, quantity: 1, pay: true };
    expect((await t.api.call('POST', '/v1/purchases', { token: broke.token, body: instant })).status).toBe(402);

    const narrowed = structuredClone(document) as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    const purchase = narrowed.paths['/v1/purchases']?.['post'];
    if (!purchase) throw new Error('no purchase operation');
    delete purchase.responses['402'];
    const refusals = purchase.responses['409'] as { content: Record<string, { schema: { allOf: { properties?: { code: { enum: string[] } } }[] } }> };
    const codes = refusals.content[PROBLEM_MEDIA_TYPE]?.schema.allOf[1]?.properties?.code;
    if (!codes) throw new Error('the 409 lists no codes');
    codes.enum = codes.enum.filter((code) => code !== 'SOLD_OUT');
    expect(t.answers.undocumented(narrowed as unknown as OpenApiDocument)).toEqual([
      'post /v1/purchases 402 INSUFFICIENT_FUNDS',
      'post /v1/purchases 409 SOLD_OUT',
    ]);
  });
});
