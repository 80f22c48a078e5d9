import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './support/server.js';
import { snapshotStores } from './support/snapshot.js';
import type { CallOptions } from './support/api.js';

let t: TestServer;
let productId: string;
let token: string;

beforeAll(async () => {
  t = await startTestServer();
  productId = (await t.api.createProduct({ stock: 10, perBuyerLimit: 2 })).id;
  const [buyer] = await t.api.createBuyers(1);
  token = buyer?.token ?? '';
});
afterAll(async () => {
  await t?.stop();
});

interface BadRequest {
  readonly name: string;
  readonly method: string;
  readonly path: string | (() => string);
  readonly options: () => CallOptions;
  readonly status: number;
  readonly code: string;
}

const forged = (): string => `${token.split('.')[0]}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`;
const buy = (body: unknown) => (): CallOptions => ({ token, body });

const cases: BadRequest[] = [
  { name: 'no token', method: 'POST', path: '/v1/purchases', options: () => ({ body: { productId, quantity: 1 } }), status: 401, code: 'UNAUTHORIZED' },
  { name: 'forged token', method: 'POST', path: '/v1/purchases', options: () => ({ token: forged(), body: { productId, quantity: 1 } }), status: 401, code: 'UNAUTHORIZED' },
  { name: 'garbage token', method: 'POST', path: '/v1/purchases', options: () => ({ token: 'not-a-token', body: { productId, quantity: 1 } }), status: 401, code: 'UNAUTHORIZED' },
  { name: 'basic auth instead of bearer', method: 'POST', path: '/v1/purchases', options: () => ({ headers: { authorization: 'Basic YTpi' }, body: { productId, quantity: 1 } }), status: 401, code: 'UNAUTHORIZED' },
  { name: 'zero quantity', method: 'POST', path: '/v1/purchases', options: buy({ productId: 'x', quantity: 0 }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'negative quantity', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: { productId, quantity: -1 } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'huge quantity', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: { productId, quantity: 1e12 } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'fractional quantity', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: { productId, quantity: 1.5 } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'quantity as a string', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: { productId, quantity: '1' } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'missing quantity', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: { productId } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'bad product id', method: 'POST', path: '/v1/purchases', options: buy({ productId: "1' or 1=1 --", quantity: 1 }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'unknown field', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: { productId, quantity: 1, price: 0 } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'malformed JSON', method: 'POST', path: '/v1/purchases', options: () => ({ token, rawBody: '{"productId": ', headers: { 'content-type': 'application/json' } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'body is an array', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: [{ productId, quantity: 1 }] }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'not JSON', method: 'POST', path: '/v1/purchases', options: () => ({ token, rawBody: 'productId=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } }), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
  { name: 'unknown product', method: 'POST', path: '/v1/purchases', options: buy({ productId: '00000000-0000-4000-8000-000000000000', quantity: 1 }), status: 404, code: 'PRODUCT_NOT_FOUND' },
  { name: 'over the limit', method: 'POST', path: '/v1/purchases', options: () => ({ token, body: { productId, quantity: 3 } }), status: 409, code: 'LIMIT_EXCEEDED' },
  { name: 'sign-up with an empty name', method: 'POST', path: '/v1/users', options: () => ({ body: { name: '   ' } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'sign-up with a huge name', method: 'POST', path: '/v1/users', options: () => ({ body: { name: 'x'.repeat(101) } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'body over the size limit', method: 'POST', path: '/v1/users', options: () => ({ body: { name: 'x'.repeat(2 * 1024 * 1024) } }), status: 413, code: 'PAYLOAD_TOO_LARGE' },
  { name: 'admin route with a buyer token', method: 'POST', path: '/v1/admin/products', options: () => ({ token, body: { name: 'x', priceCents: 1, stock: 1 } }), status: 403, code: 'FORBIDDEN' },
  { name: 'admin route without a token', method: 'POST', path: '/v1/admin/users', options: () => ({ body: { count: 1, balanceCents: 0 } }), status: 401, code: 'UNAUTHORIZED' },
  { name: 'product with negative stock', method: 'POST', path: '/v1/admin/products', options: () => ({ token: t.api.adminToken, body: { name: 'x', priceCents: 1, stock: -1 } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'product with an unknown strategy', method: 'POST', path: '/v1/admin/products', options: () => ({ token: t.api.adminToken, body: { name: 'x', priceCents: 1, stock: 1, strategy: 'yolo' } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'product closing before it opens', method: 'POST', path: '/v1/admin/products', options: () => ({ token: t.api.adminToken, body: { name: 'x', priceCents: 1, stock: 1, opensAt: '2030-01-02T00:00:00Z', closesAt: '2030-01-01T00:00:00Z' } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'product opening on 2030-13-45', method: 'POST', path: '/v1/admin/products', options: () => ({ token: t.api.adminToken, body: { name: 'x', priceCents: 1, stock: 1, opensAt: '2030-13-45T00:00:00Z' } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'removing more stock than is free', method: 'PATCH', path: () => `/v1/admin/products/${productId}`, options: () => ({ token: t.api.adminToken, body: { addStock: -11 } }), status: 409, code: 'INVALID_STOCK_CHANGE' },
  { name: 'empty product change', method: 'PATCH', path: () => `/v1/admin/products/${productId}`, options: () => ({ token: t.api.adminToken, body: {} }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'too many users at once', method: 'POST', path: '/v1/admin/users', options: () => ({ token: t.api.adminToken, body: { count: 1_000_000, balanceCents: 0 } }), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'bad id in the path', method: 'GET', path: '/v1/products/42', options: () => ({}), status: 400, code: 'VALIDATION_FAILED' },
  { name: 'unknown route', method: 'GET', path: '/v1/nothing-here', options: () => ({}), status: 404, code: 'NOT_FOUND' },
];

describe('bad requests', () => {
  it.each(cases.map((c) => [c.name, c] as const))('answers %s with its 4xx code and changes nothing', async (_name, c) => {
    const before = await snapshotStores(t.server.system.stores.databases);
    const path = typeof c.path === 'function' ? c.path() : c.path;
    const answer = await t.api.call(c.method, path, c.options());
    expect(answer.status).toBe(c.status);
    expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(answer.body).toMatchObject({ code: c.code, status: c.status });
    expect(typeof answer.body['detail']).toBe('string');
    expect(await snapshotStores(t.server.system.stores.databases)).toEqual(before);
  });

  it('has at least 15 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(15);
  });
});
