/**
 * What a request costs the server and what it may send back, whatever it holds: bounded bodies and
 * bounded answers, NUL bytes and impossible dates refused as 400s, Node's own parser refusals as
 * problem documents with stable codes, `nosniff` on every answer, and a client that hangs up is
 * no error in the log. Each refusal changes nothing in any store.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envOf, freePort, startFlashsale, stopAll, type FlashsaleProcess } from './support/flashsale-process.js';
import { snapshotStores } from './support/snapshot.js';
import { startTestServer, type TestServer } from './support/server.js';

let t: TestServer;
let token: string;
let productId: string;

beforeAll(async () => {
  t = await startTestServer();
  productId = (await t.api.createProduct({ stock: 5, perBuyerLimit: 1 })).id;
  token = (await t.api.createBuyers(1))[0]?.token ?? '';
});
afterAll(async () => {
  await stopAll();
  await t?.stop();
});

/** Sends `request` as raw bytes on its own connection; resolves with all the server sent before it closed. */
function raw(port: number, request: string, options: { hangUpAfterMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(text));
    socket.once('connect', () => {
      socket.write(request);
      if (options.hangUpAfterMs !== undefined) setTimeout(() => socket.resetAndDestroy(), options.hangUpAfterMs);
    });
    setTimeout(() => reject(new Error(`no close within 20 s; received:\n${text}`)), 20_000).unref();
  });
}

function portOf(server: TestServer): number {
  return Number(new URL(server.server.url).port);
}

/** The status line, headers (lower-cased names) and parsed body of one raw response. */
function parse(response: string): { status: number; headers: Record<string, string>; body: Record<string, unknown> } {
  const end = response.indexOf('\r\n\r\n');
  const [statusLine = '', ...lines] = response.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: JSON.parse(response.slice(end + 4)) as Record<string, unknown> };
}

describe('bodies and the answers they buy', () => {
  it('refuses a purchase body over 4 KiB with 413 before it is parsed', async () => {
    const before = await snapshotStores(t.server.system.stores.databases);
    const answer = await t.api.call('POST', '/v1/purchases', { token, body: { productId, quantity: 1, pad: 'x'.repeat(4 * 1024) } });
    expect(answer.status).toBe(413);
    expect(answer.body['code']).toBe('PAYLOAD_TOO_LARGE');
    expect(await snapshotStores(t.server.system.stores.databases)).toEqual(before);
  });

  it('answers a body of hundreds of unknown fields with at most 20 errors and a short detail', async () => {
    const fields = Array.from({ length: 350 }, (_, i) => `"f${i}":1`).join(',');
    const rawBody = `{${fields},"name":"someone"}`;
    expect(rawBody.length).toBeLessThan(4 * 1024);
    const answer = await t.api.call('POST', '/v1/users', { rawBody, headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(400);
    expect(answer.body['code']).toBe('VALIDATION_FAILED');
    expect(answer.body['errors']).toHaveLength(20);
    expect(String(answer.body['detail']).length).toBeLessThanOrEqual(500);
    expect(answer.body['detail']).toContain('(and 349 more)');
    // The answer is smaller than the body that bought it.
    expect(JSON.stringify(answer.body).length).toBeLessThan(rawBody.length);
  });

  it('bounds each field name an error repeats', async () => {
    const rawBody = `{"${'k'.repeat(3000)}":1,"name":"someone"}`;
    const answer = await t.api.call('POST', '/v1/users', { rawBody, headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(400);
    const [first] = answer.body['errors'] as { field: string }[];
    expect(first?.field.length).toBeLessThanOrEqual(100);
    expect(String(answer.body['detail']).length).toBeLessThanOrEqual(500);
  });

  it('refuses deeply nested brackets as a bad body, not a fault', async () => {
    const answer = await t.api.call('POST', '/v1/users', { rawBody: '['.repeat(4000), headers: { 'content-type': 'application/json' } });
    expect(answer.status).toBe(400);
    expect(answer.body['code']).toBe('VALIDATION_FAILED');
  });

  it('still takes a large order-id check on the admin route that needs it', async () => {
    const ids = Array.from({ length: 5000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    const answer = await t.api.admin<{ missing: string[] }>('POST', '/v1/admin/orders/missing', { ids });
    expect(answer.status).toBe(200);
    expect(answer.body.missing).toHaveLength(5000);
  });
});

describe('text and dates that pass a pattern but no store', () => {
  const admin = (body: unknown) => ({ token: t.api.adminToken, body });
  const cases: { name: string; method: string; path: () => string; options: () => { token?: string; body: unknown } }[] = [
    { name: 'a NUL in a sign-up name', method: 'POST', path: () => '/v1/users', options: () => ({ body: { name: 'a\u0000b' } }) },
    { name: 'a name of NULs only', method: 'POST', path: () => '/v1/users', options: () => ({ body: { name: '\u0000' } }) },
    { name: 'a NUL in a product name', method: 'POST', path: () => '/v1/admin/products', options: () => admin({ name: 'x\u0000', priceCents: 1, stock: 1 }) },
    { name: 'a NUL in a renamed product', method: 'PATCH', path: () => `/v1/admin/products/${productId}`, options: () => admin({ name: '\u0000' }) },
    { name: 'a NUL in namePrefix', method: 'POST', path: () => '/v1/admin/users', options: () => admin({ count: 1, balanceCents: 0, namePrefix: 'b\u0000' }) },
    { name: 'year 0', method: 'POST', path: () => '/v1/admin/products', options: () => admin({ name: 'x', priceCents: 1, stock: 1, opensAt: '0000-01-01T00:00:00Z' }) },
    { name: '30 February', method: 'POST', path: () => '/v1/admin/products', options: () => admin({ name: 'x', priceCents: 1, stock: 1, opensAt: '2026-02-30T10:00:00Z' }) },
    { name: '29 February of a common year', method: 'POST', path: () => '/v1/admin/products', options: () => admin({ name: 'x', priceCents: 1, stock: 1, closesAt: '2027-02-29T10:00:00Z' }) },
    { name: 'hour 24', method: 'PATCH', path: () => `/v1/admin/products/${productId}`, options: () => admin({ closesAt: '2030-01-01T24:00:00Z' }) },
    { name: 'minute 60', method: 'PATCH', path: () => `/v1/admin/products/${productId}`, options: () => admin({ accountsCreatedBefore: '2030-01-01T10:60:00Z' }) },
    { name: 'an offset of +25:00', method: 'POST', path: () => '/v1/admin/products', options: () => admin({ name: 'x', priceCents: 1, stock: 1, opensAt: '2030-01-01T10:00:00+25:00' }) },
  ];
  for (const c of cases) {
    it(`refuses ${c.name} with 400 VALIDATION_FAILED and changes nothing`, async () => {
      const before = await snapshotStores(t.server.system.stores.databases);
      const answer = await t.api.call(c.method, c.path(), c.options());
      expect(answer.status, JSON.stringify(answer.body)).toBe(400);
      expect(answer.body['code']).toBe('VALIDATION_FAILED');
      expect(await snapshotStores(t.server.system.stores.databases)).toEqual(before);
    });
  }

  it('takes 29 February of a leap year', async () => {
    const answer = await t.api.admin('POST', '/v1/admin/products', { name: 'leap', priceCents: 1, stock: 1, closesAt: '2028-02-29T10:00:00Z' });
    expect(answer.status).toBe(201);
    expect(answer.body['closesAt']).toBe('2028-02-29T10:00:00.000Z');
  });
});

describe("Node's own refusals", () => {
  it('answers a header block over 16 KiB with 431 HEADERS_TOO_LARGE as problem+json, and closes', async () => {
    const response = parse(await raw(portOf(t), `GET /healthz HTTP/1.1\r\nHost: flashsale\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`));
    expect(response.status).toBe(431);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['connection']).toBe('close');
    expect(response.body['code']).toBe('HEADERS_TOO_LARGE');
  });

  it('answers Content-Length with Transfer-Encoding with 400 BAD_REQUEST, and creates no user', async () => {
    const before = await snapshotStores(t.server.system.stores.databases);
    const body = '{"name":"smuggled"}';
    const response = parse(
      await raw(
        portOf(t),
        `POST /v1/users HTTP/1.1\r\nHost: flashsale\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      ),
    );
    expect(response.status).toBe(400);
    expect(response.body['code']).toBe('BAD_REQUEST');
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(await snapshotStores(t.server.system.stores.databases)).toEqual(before);
  });

  it('answers a request that never finishes its headers with 408 REQUEST_TIMEOUT as problem+json', async () => {
    const quick = await startTestServer({ headersTimeoutMs: 300, requestTimeoutMs: 600 });
    try {
      const response = parse(await raw(portOf(quick), 'POST /v1/purchases HTTP/1.1\r\nHost: flashsale\r\n'));
      expect(response.status).toBe(408);
      expect(response.body['code']).toBe('REQUEST_TIMEOUT');
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    } finally {
      await quick.stop();
    }
  });
});

describe('headers on every answer', () => {
  it('sends nosniff on answers, refusals and unknown routes alike, and no-store where a token is carried', async () => {
    const answers = await Promise.all([
      t.api.call('GET', '/healthz'),
      t.api.call('GET', '/v1/nothing-here'),
      t.api.call('POST', '/v1/purchases', { body: { productId, quantity: 1 } }),
      t.api.call('POST', '/v1/purchases', { token, body: { productId, quantity: 0 } }),
      t.api.call('GET', `/v1/products/${productId}`),
      t.api.call('GET', '/metrics'),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([200, 404, 401, 400, 200, 200]);
    for (const answer of answers) expect(answer.headers['x-content-type-options']).toBe('nosniff');
    const signUp = await t.api.call('POST', '/v1/users', { body: { name: 'headers' } });
    expect(signUp.status).toBe(201);
    expect(signUp.headers['cache-control']).toBe('no-store');
    expect(signUp.headers['x-content-type-options']).toBe('nosniff');
  });
});

describe('a client that hangs up', () => {
  let serve: FlashsaleProcess;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    serve = await startFlashsale('serve', envOf(t.config, { PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' }), 'listening on');
  });

  it('is no error in the log, however many do it', async () => {
    const hangUps = Array.from({ length: 20 }, () =>
      raw(port, 'POST /v1/users HTTP/1.1\r\nHost: flashsale\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name":', { hangUpAfterMs: 100 }),
    );
    await Promise.all(hangUps);
    // The server is still answering, and said nothing about them at info level or above.
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    const lines = serve.output().split('\n').filter((line) => line.startsWith('{'));
    const loud = lines.filter((line) => (JSON.parse(line) as { level: number }).level >= 40);
    expect(loud).toEqual([]);
    expect(serve.output()).not.toContain('ECONNRESET');
  });
});
