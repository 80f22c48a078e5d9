/**
 * Authentication comes before the body: a request without a valid token to a buyer or admin route
 * hears 401 (403 for a buyer's token on an admin route), never a 400, 413 or 415 describing a body
 * it was not allowed to send. Named cases on purchase, pay and an admin route, then every route
 * the OpenAPI document marks as needing a bearer token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallOptions } from './support/api.js';
import { startTestServer, type TestServer } from './support/server.js';

let t: TestServer;
let token: string;

beforeAll(async () => {
  t = await startTestServer();
  const [buyer] = await t.api.createBuyers(1);
  token = buyer?.token ?? '';
});
afterAll(async () => {
  await t?.stop();
});

const forged = (): string => `${token.split('.')[0]}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`;
const json = (rawBody: string): CallOptions => ({ rawBody, headers: { 'content-type': 'application/json' } });

/** Requests that are wrong in their body, path or headers as well as in their token. */
const badRequests: { readonly name: string; readonly method: string; readonly path: string; readonly options: CallOptions }[] = [
  { name: 'a purchase with a zero quantity', method: 'POST', path: '/v1/purchases', options: { body: { productId: 'x', quantity: 0 } } },
  { name: 'a purchase with an unknown field', method: 'POST', path: '/v1/purchases', options: { body: { quantity: 1, price: 0 } } },
  { name: 'a purchase with malformed JSON', method: 'POST', path: '/v1/purchases', options: json('{"productId": ') },
  { name: 'a purchase sent as a form', method: 'POST', path: '/v1/purchases', options: { rawBody: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' } } },
  { name: 'a purchase over the body limit', method: 'POST', path: '/v1/purchases', options: { body: { productId: 'x'.repeat(2 * 1024 * 1024), quantity: 1 } } },
  { name: 'a payment of a malformed order id', method: 'POST', path: '/v1/orders/not-an-id/pay', options: { body: {} } },
  { name: 'a payment with malformed JSON', method: 'POST', path: '/v1/orders/00000000-0000-4000-8000-000000000000/pay', options: json('{') },
  { name: 'a payment with an empty Idempotency-Key', method: 'POST', path: '/v1/orders/00000000-0000-4000-8000-000000000000/pay', options: { body: {}, headers: { 'idempotency-key': '' } } },
  { name: 'a product with negative stock', method: 'POST', path: '/v1/admin/products', options: { body: { name: 'x', priceCents: 1, stock: -1 } } },
  { name: 'a product with malformed JSON', method: 'POST', path: '/v1/admin/products', options: json('{"name"') },
  { name: 'a product change of a malformed id', method: 'PATCH', path: '/v1/admin/products/42', options: { body: { addStock: 'lots' } } },
];

const isAdmin = (path: string): boolean => path.startsWith('/v1/admin/');

describe('authentication before validation', () => {
  it.each(badRequests.map((c) => [c.name, c] as const))('answers %s without a token 401, not a description of its body', async (_name, c) => {
    const answer = await t.api.call(c.method, c.path, c.options);
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it.each(badRequests.map((c) => [c.name, c] as const))('answers %s with a forged token 401', async (_name, c) => {
    const answer = await t.api.call(c.method, c.path, { ...c.options, token: forged() });
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it.each(badRequests.filter((c) => isAdmin(c.path)).map((c) => [c.name, c] as const))(
    'answers %s with a buyer token 403',
    async (_name, c) => {
      const answer = await t.api.call(c.method, c.path, { ...c.options, token });
      expect(answer.status).toBe(403);
      expect(answer.body).toMatchObject({ code: 'FORBIDDEN' });
    },
  );

  it.each(badRequests.map((c) => [c.name, c] as const))('still refuses %s from a caller who may send it', async (_name, c) => {
    const answer = await t.api.call(c.method, c.path, { ...c.options, token: isAdmin(c.path) ? t.api.adminToken : token });
    expect([400, 413, 415]).toContain(answer.status);
  });
});

interface Operation {
  readonly security?: readonly unknown[];
  readonly parameters?: readonly { readonly in: string; readonly required?: boolean }[];
}

describe('every route that needs a token', () => {
  it('answers a malformed request with no token 401, and one with a buyer token on an admin route 403', async () => {
    const document = t.server.app.swagger() as unknown as { paths: Record<string, Record<string, Operation>> };
    const guarded: { method: string; path: string; invalid: boolean }[] = [];
    for (const [template, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (!operation.security?.length) continue;
        const body = method === 'post' || method === 'patch';
        const requiredQuery = operation.parameters?.some((p) => p.in === 'query' && p.required) ?? false;
        // Every path parameter is an id: 'not-an-id' fails its schema.
        const path = template.replace(/\{[^}]+\}/g, 'not-an-id');
        guarded.push({ method: method.toUpperCase(), path, invalid: body || path !== template || requiredQuery });
      }
    }
    expect(guarded.length).toBeGreaterThanOrEqual(14);

    for (const route of guarded) {
      const options: CallOptions = route.method === 'GET' ? {} : json('{"unfinished": ');
      const name = `${route.method} ${route.path}`;
      expect({ name, status: (await t.api.call(route.method, route.path, options)).status }).toEqual({ name, status: 401 });
      expect({ name, status: (await t.api.call(route.method, route.path, { ...options, token: 'garbage' })).status }).toEqual({ name, status: 401 });
      if (isAdmin(route.path)) {
        expect({ name, status: (await t.api.call(route.method, route.path, { ...options, token })).status }).toEqual({ name, status: 403 });
      }
      // The same request from someone allowed to send it is refused for what it is.
      if (route.invalid) {
        const allowed = isAdmin(route.path) ? t.api.adminToken : token;
        expect({ name, status: (await t.api.call(route.method, route.path, { ...options, token: allowed })).status }).toEqual({ name, status: 400 });
      }
    }
  });
});
