/**
 * Users as a service of its own: `startServiceServer` (what `serve --service users` runs) opens
 * only the users database and serves the users client on its internal port; the API process,
 * given `USERS_URL`, reaches users over HTTP and never opens that database. Sign-up, tokens,
 * purchases that pay at once under a storm, and the audit's money check all hold across the hop;
 * with the users service gone, the API names it in `/readyz` and answers `503`, never `500`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { dropDatabases } from '../src/infra/database.js';
import { startServiceServer, type RunningService } from '../src/service-server.js';
import type { Answer } from './support/api.js';
import { ADMIN_TOKEN, startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { runBench } from '../src/bench/bench.js';
import { scenarioFor } from '../src/bench/scenarios.js';
import { expectInvariant, storm } from './support/storm.js';

const SERVICE_TOKEN = randomBytes(32).toString('hex');
const PREFIX = `t_${randomBytes(5).toString('hex')}_`;
const TOKEN_SECRET = 'test-token-secret-0123456789-0123456789';
const PRICE = 1_000;

let users: RunningService | undefined;
let t: TestServer;
let usersDataDir: string;

beforeAll(async () => {
  usersDataDir = await mkdtemp(join(tmpdir(), 'flashsale-users-'));
  users = await startServiceServer(
    loadConfig(
      { LOG_LEVEL: 'warn', DB_POOL_SIZE: '4' },
      {
        service: 'users',
        databaseUrl: TEST_DATABASE_URL,
        databasePrefix: PREFIX,
        dataDir: usersDataDir,
        tokenSecret: TOKEN_SECRET,
        serviceToken: SERVICE_TOKEN,
        port: 0,
        internalPort: 0,
      },
    ),
  );
  t = await startTestServer({ databasePrefix: PREFIX, usersUrl: users.internalUrl, serviceToken: SERVICE_TOKEN, serviceCallTimeoutMs: 8_000 });
});
afterAll(async () => {
  await t?.stop({ keepData: true });
  await users?.close();
  await dropDatabases(TEST_DATABASE_URL, ['users', 'inventory', 'orders'].map((module) => `${PREFIX}${module}`));
  await rm(usersDataDir, { recursive: true, force: true });
});

const balanceOf = async (token: string): Promise<number> =>
  (await t.api.call<{ balanceCents: number }>('GET', '/v1/me', { token })).body.balanceCents;

describe('users as a service of its own', () => {
  it('is reached over HTTP: the API process never opens the users database', async () => {
    expect(() => t.server.system.stores.databases.users`select 1`).toThrow(/not opened in this process/);
    expect(t.server.system.clients.users).toBe(t.server.system.users);
    expect(t.server.system.services.map((service) => service.service)).toContain('users');
    expect((await t.api.call('GET', '/readyz')).status).toBe(200);
  });

  it('signs up, signs in and pays across the hop; a storm of instant purchases sells exactly the stock, money whole', async () => {
    const signedUp = await t.api.call<{ id: string; token: string }>('POST', '/v1/users', { body: { name: 'over the hop' } });
    expect(signedUp.status).toBe(201);
    expect((await t.api.call('GET', '/v1/me', { token: signedUp.body.token })).status).toBe(200);

    const product = await t.api.createProduct({ stock: 20, priceCents: PRICE, perBuyerLimit: 1 });
    const buyers = await t.api.createBuyers(60, 5 * PRICE);
    const answers: Answer[] = await storm(buyers.length, (i) =>
      t.api.call('POST', '/v1/purchases', { token: buyers[i]?.token ?? '', body: { productId: product.id, quantity: 1, pay: true } }),
    );
    expect(answers.filter((answer) => answer.status >= 500)).toEqual([]);
    const paid = answers.filter((answer) => answer.status === 201);
    expect(paid).toHaveLength(20);
    for (const answer of paid) expect(answer.body['order']).toMatchObject({ status: 'paid' });
    const balances = await Promise.all(buyers.map((buyer) => balanceOf(buyer.token)));
    expect(balances.filter((cents) => cents === 4 * PRICE)).toHaveLength(20);
    expect(balances.filter((cents) => cents === 5 * PRICE)).toHaveLength(40);
    // The audit reads the ledger through the users client too: every paid order debited once.
    await expectInvariant(t.api, product.id, answers);
  });

  it('serves its own health, readiness and metrics', async () => {
    if (!users) throw new Error('no users service');
    const health = await fetch(`${users.url}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok', service: 'users' });
    expect((await fetch(`${users.url}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${users.url}/metrics`)).text()).toContain('flashsale_process_cpu_seconds_total');
  });

  it("is measured whole by bench: the CPU per answer sums every process's own /metrics", async () => {
    if (!users) throw new Error('no users service');
    const target = { url: t.server.url, adminToken: ADMIN_TOKEN, db: undefined };
    const scenario = scenarioFor('herd', { buyers: 20 });
    const whole = await runBench({ target: { ...target, cpuFrom: [`${t.server.url}/metrics`, `${users.url}/metrics`] }, scenario, strategies: ['atomic'] });
    expect(whole.summary[0]?.serverCpuUsPerAnswer).toBeGreaterThan(0);
    // A process that does not answer leaves no figure rather than part of one.
    const part = await runBench({ target: { ...target, cpuFrom: [`${t.server.url}/metrics`, `${users.url}/nowhere`] }, scenario, strategies: ['atomic'] });
    expect(part.summary[0]?.serverCpuUsPerAnswer).toBeNull();
  });

  it('once the users service is gone, is named in /readyz and a payment is 503, never 500', async () => {
    const product = await t.api.createProduct({ stock: 5, priceCents: PRICE });
    const [buyer] = await t.api.createBuyers(1, 5 * PRICE);
    if (!buyer || !users) throw new Error('no buyer');
    const held = await t.api.purchase(buyer.token, product.id);
    expect(held.status).toBe(201);
    await users.close();
    users = undefined;
    const ready = await t.api.call('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body['down']).toContain('service:users');
    const orderId = (held.body['order'] as { id: string }).id;
    const pay = await t.api.call('POST', `/v1/orders/${orderId}/pay`, { token: buyer.token });
    expect(pay.status).toBe(503);
    expect(pay.body['code']).toBe('STORE_UNAVAILABLE');
  });
});
