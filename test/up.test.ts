/**
 * `flashsale up` as a real process: it starts the users service and the API as processes of their
 * own on one PostgreSQL (here the test server's, through `DATABASE_URL`), prints each address, a
 * buyer signs up and pays across the two, and Ctrl-C (SIGINT) stops both and leaves nothing
 * running on their ports.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { dropDatabases } from '../src/infra/database.js';
import { Api } from './support/api.js';
import { freePort } from './support/flashsale-process.js';
import { claimConnections, poolConnections, TEST_POOL_SIZE } from './support/pg-budget.js';
import { ADMIN_TOKEN, TEST_DATABASE_URL } from './support/server.js';

const PROJECT = resolve(import.meta.dirname, '..');
const PREFIX = `t_${randomBytes(5).toString('hex')}_`;
let dataDir: string | undefined;

afterAll(async () => {
  await dropDatabases(TEST_DATABASE_URL, ['users', 'inventory', 'orders'].map((module) => `${PREFIX}${module}`));
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

const answers = async (url: string): Promise<boolean> =>
  fetch(url).then(
    () => true,
    () => false,
  );

describe('flashsale up', () => {
  it('runs users and the API as two processes, serves a paying buyer across them, and stops both on Ctrl-C', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'flashsale-up-'));
    const port = await freePort();
    const internalPort = await freePort();
    // Both children's pools (users: half of DB_POOL_SIZE; the API's inventory and orders).
    const release = claimConnections(poolConnections(TEST_POOL_SIZE), 'flashsale up');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'up'], {
      cwd: PROJECT,
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        DATABASE_URL: TEST_DATABASE_URL,
        DATABASE_PREFIX: PREFIX,
        FLASHSALE_DATA_DIR: dataDir,
        ADMIN_TOKEN,
        PORT: String(port),
        INTERNAL_PORT: String(internalPort),
        DB_POOL_SIZE: String(TEST_POOL_SIZE),
        SEED_DEMO: 'false',
        LOG_LEVEL: 'warn',
        RATE_LIMIT_PER_SECOND: '0',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    try {
      for (let waited = 0; !output.includes('Ctrl-C stops them all'); waited += 50) {
        if (waited > 90_000 || child.exitCode !== null) throw new Error(`flashsale up did not start:\n${output}`);
        await sleep(50);
      }
      expect(output).toContain(`the API on http://127.0.0.1:${port}`);
      expect(output).toContain(`internal routes on http://127.0.0.1:${internalPort}`);

      const api = new Api(`http://127.0.0.1:${port}`, ADMIN_TOKEN);
      try {
        const product = await api.createProduct({ stock: 3, priceCents: 700 });
        const [buyer] = await api.createBuyers(1, 1_000);
        if (!buyer) throw new Error('no buyer');
        const paid = await api.call('POST', '/v1/purchases', { token: buyer.token, body: { productId: product.id, quantity: 1, pay: true } });
        expect(paid.status).toBe(201);
        expect(paid.body['order']).toMatchObject({ status: 'paid' });
        expect((await api.call<{ balanceCents: number }>('GET', '/v1/me', { token: buyer.token })).body.balanceCents).toBe(300);
        expect((await api.audit(product.id)).violations).toEqual([]);
      } finally {
        await api.close();
      }

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(await answers(`http://127.0.0.1:${port}/healthz`)).toBe(false);
      expect(await answers(`http://127.0.0.1:${port + 1}/healthz`)).toBe(false);
      expect(await answers(`http://127.0.0.1:${internalPort}/internal/users`)).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      release();
    }
  });
});
