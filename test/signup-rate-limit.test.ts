/**
 * Sign-ups are limited per client address (`SIGNUP_RATE_LIMIT_PER_MINUTE`): an IPv4 address alone,
 * an IPv6 address by its /64, an IPv4-mapped address as its IPv4 address; by the socket's address
 * unless `TRUSTED_PROXY_HEADER` names the header the proxy writes (then its last entry). A refused
 * sign-up is `429 SIGNUP_RATE_LIMITED` with `Retry-After` and creates no user. Nothing else is
 * limited per address. Requests are injected with the client address they come from.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { snapshotStores } from './support/snapshot.js';
import { startTestServer, type TestServer } from './support/server.js';

const LIMIT = 3;

/** Limited by the socket's address. */
let direct: TestServer;
/** Behind a proxy that writes X-Forwarded-For. */
let proxied: TestServer;

beforeAll(async () => {
  direct = await startTestServer({ signupRateLimitPerMinute: LIMIT });
  proxied = await startTestServer({ signupRateLimitPerMinute: LIMIT, trustedProxyHeader: 'x-forwarded-for' });
});
afterAll(async () => {
  await direct?.stop();
  await proxied?.stop();
});

/**
 * The window is the wall-clock minute: a test that needs its sign-ups to fall in one minute starts
 * with enough of the minute left (waiting for the next one if not).
 */
async function inOneMinute(): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < 15_000) await sleep(left + 10);
}

interface Injected {
  readonly status: number;
  readonly code: unknown;
  readonly retryAfter: string | undefined;
}

async function signUp(t: TestServer, remoteAddress: string, headers: Record<string, string> = {}): Promise<Injected> {
  const answer = await t.server.app.inject({ method: 'POST', url: '/v1/users', payload: { name: 'bot' }, remoteAddress, headers });
  const body = answer.json<{ code?: string }>();
  const retryAfter = answer.headers['retry-after'];
  return { status: answer.statusCode, code: body.code, retryAfter: retryAfter === undefined ? undefined : String(retryAfter) };
}

/** Signs up `count` times (the whole limit unless told), from each address in turn; all must succeed. */
async function useUp(
  t: TestServer,
  addresses: readonly string[],
  headers: (i: number) => Record<string, string> = () => ({}),
  count = LIMIT,
): Promise<void> {
  for (let i = 0; i < count; i += 1) {
    const address = addresses[i % addresses.length] ?? '';
    expect((await signUp(t, address, headers(i))).status, `sign-up ${i + 1} from ${address}`).toBe(201);
  }
}

/** A sign-up that must be refused and create nothing. */
async function refused(t: TestServer, remoteAddress: string, headers: Record<string, string> = {}): Promise<void> {
  const before = await snapshotStores(t.server.system.stores.databases);
  const answer = await signUp(t, remoteAddress, headers);
  expect(answer).toMatchObject({ status: 429, code: 'SIGNUP_RATE_LIMITED' });
  expect(Number(answer.retryAfter)).toBeGreaterThanOrEqual(1);
  expect(Number(answer.retryAfter)).toBeLessThanOrEqual(60);
  expect(await snapshotStores(t.server.system.stores.databases)).toEqual(before);
}

describe('the sign-up rate limit', () => {
  it('counts an IPv4 address alone, and its IPv4-mapped IPv6 spelling as the same address', async () => {
    await inOneMinute();
    await useUp(direct, ['192.0.2.1']);
    await refused(direct, '192.0.2.1');
    await refused(direct, '::ffff:192.0.2.1');
    expect((await signUp(direct, '192.0.2.2')).status).toBe(201);
  });

  it('counts an IPv6 address by its /64, however it is spelled', async () => {
    await inOneMinute();
    await useUp(direct, ['2001:db8:1:2::1', '2001:db8:1:2:ffff::9', '2001:db8:1:2:aaaa:bbbb:cccc:dddd']);
    await refused(direct, '2001:0db8:0001:0002:0000:0000:0000:0005');
    expect((await signUp(direct, '2001:db8:1:3::1')).status).toBe(201);
  });

  it('ignores a proxy header it was not told to trust: the socket address counts', async () => {
    await inOneMinute();
    await useUp(direct, ['198.51.100.1'], (i) => ({ 'x-forwarded-for': `203.0.113.${i + 1}` }));
    await refused(direct, '198.51.100.1', { 'x-forwarded-for': '203.0.113.99' });
  });

  it("counts the trusted header's last entry (the proxy's), not what the client put before it", async () => {
    await inOneMinute();
    // One proxy, one socket address; each client claims something else before the proxy's entry.
    await useUp(proxied, ['10.0.0.1'], (i) => ({ 'x-forwarded-for': `203.0.113.${i + 1}, 198.51.100.7` }));
    await refused(proxied, '10.0.0.1', { 'x-forwarded-for': '198.51.100.7' });
    await refused(proxied, '10.0.0.1', { 'x-forwarded-for': '1.2.3.4, 198.51.100.7' });
    expect((await signUp(proxied, '10.0.0.1', { 'x-forwarded-for': '198.51.100.7, 198.51.100.8' })).status).toBe(201);
    // An IPv6 client behind the proxy counts by its /64 too.
    await useUp(proxied, ['10.0.0.1'], (i) => ({ 'x-forwarded-for': `2001:db8:9:9::${i + 1}` }));
    await refused(proxied, '10.0.0.1', { 'x-forwarded-for': '2001:db8:9:9::ff' });
  });

  it('counts a request without the trusted header, or with no address in it, by its socket address', async () => {
    await inOneMinute();
    const noAddress = (i: number): Record<string, string> => (i === 0 ? {} : { 'x-forwarded-for': 'unknown' });
    await useUp(proxied, ['10.0.0.2'], noAddress);
    await refused(proxied, '10.0.0.2');
  });

  it('limits only sign-ups: from an address that used up its sign-ups, refreshes, bulk creation and purchases go on', async () => {
    await inOneMinute();
    const address = '192.0.2.50';
    const first = await direct.server.app.inject({ method: 'POST', url: '/v1/users', payload: { name: 'ada' }, remoteAddress: address });
    const { refreshToken } = first.json<{ refreshToken: string }>();
    await useUp(direct, [address], undefined, LIMIT - 1);
    await refused(direct, address);
    const product = await direct.api.createProduct({ stock: 10 });
    for (let i = 0; i < LIMIT + 2; i += 1) {
      const refreshed = await direct.server.app.inject({ method: 'POST', url: '/v1/tokens', payload: { refreshToken }, remoteAddress: address });
      expect(refreshed.statusCode).toBe(200);
      const { token } = refreshed.json<{ token: string }>();
      const bought = await direct.server.app.inject({
        method: 'POST',
        url: '/v1/purchases',
        payload: { productId: product.id, quantity: 1 },
        headers: { authorization: `Bearer ${token}` },
        remoteAddress: address,
      });
      expect(bought.statusCode).toBe(201);
    }
    const bulk = await direct.server.app.inject({
      method: 'POST',
      url: '/v1/admin/users',
      payload: { count: LIMIT + 1, balanceCents: 0 },
      headers: { authorization: `Bearer ${direct.api.adminToken}` },
      remoteAddress: address,
    });
    expect(bulk.statusCode).toBe(201);
  });
});

describe('its configuration', () => {
  it('is 20 sign-ups a minute by the socket address unless set, 0 turns it off, and bad values are named', () => {
    const defaults = loadConfig({});
    expect(defaults).toMatchObject({ signupRateLimitPerMinute: 20, trustedProxyHeader: undefined, tokenTtlSeconds: 3600, revocationRefreshMs: 2000 });
    expect(loadConfig({ SIGNUP_RATE_LIMIT_PER_MINUTE: '0', TRUSTED_PROXY_HEADER: 'X-Forwarded-For' })).toMatchObject({
      signupRateLimitPerMinute: 0,
      trustedProxyHeader: 'x-forwarded-for',
    });
    let error: unknown;
    try {
      loadConfig({ SIGNUP_RATE_LIMIT_PER_MINUTE: '-1', TRUSTED_PROXY_HEADER: 'x forwarded', TOKEN_TTL_SECONDS: '0', REVOCATION_REFRESH_MS: 'soon' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    for (const name of ['SIGNUP_RATE_LIMIT_PER_MINUTE', 'TRUSTED_PROXY_HEADER', 'TOKEN_TTL_SECONDS', 'REVOCATION_REFRESH_MS']) {
      expect((error as ConfigError).message).toContain(name);
    }
  });
});
