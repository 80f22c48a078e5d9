/**
 * SIGTERM on `flashsale serve`: the server stops accepting, finishes the requests in flight (a
 * pay sleeping in its payment delay completes with 200), closes its pools and exits 0.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { MODULE_NAMES } from '../src/config.js';
import { dropDatabases } from '../src/infra/database.js';
import { Api } from './support/api.js';
import { TEST_POOL_SIZE } from './support/pg-budget.js';
import { ADMIN_TOKEN, TEST_DATABASE_URL } from './support/server.js';

describe('SIGTERM', () => {
  it('finishes an in-flight pay, then exits 0', async () => {
    const prefix = `t_${randomBytes(5).toString('hex')}_`;
    const dataDir = await mkdtemp(join(tmpdir(), 'flashsale-shutdown-'));
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'serve'], {
      env: {
        ...process.env,
        DATABASE_URL: TEST_DATABASE_URL,
        DATABASE_PREFIX: prefix,
        FLASHSALE_DATA_DIR: dataDir,
        ADMIN_TOKEN,
        TOKEN_SECRET: 'test-token-secret-0123456789-0123456789',
        SEED_DEMO: 'false',
        PORT: '0',
        LOG_LEVEL: 'warn',
        PAYMENT_DELAY_MS: '1500',
        // The suite's budget of PostgreSQL connections (pg-budget.ts).
        DB_POOL_SIZE: String(TEST_POOL_SIZE),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let output = '';
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no start within 60 s:\n${output}`)), 60_000);
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          const match = /listening on (http:\/\/\S+)/.exec(output);
          if (match?.[1]) {
            clearTimeout(timer);
            resolve(match[1]);
          }
        });
        void exited.then(() => reject(new Error(`exited before listening:\n${output}`)));
      });
      const api = new Api(url, ADMIN_TOKEN);
      const [buyer] = await api.createBuyers(1, 10_000);
      if (!buyer) throw new Error('no buyer');
      const product = await api.createProduct({ priceCents: 1000, stock: 1 });
      const bought = await api.purchase(buyer.token, product.id);
      const orderId = (bought.body['order'] as { id: string }).id;

      const paying = api.call('POST', `/v1/orders/${orderId}/pay`, { token: buyer.token });
      await sleep(400);
      child.kill('SIGTERM');
      const paid = await paying;
      expect(paid.status).toBe(200);
      expect(paid.body['order']).toMatchObject({ status: 'paid' });
      expect(await exited).toBe(0);
      expect(output).toContain('SIGTERM');
      await expect(api.call('GET', '/healthz')).rejects.toThrow();
      await api.close();
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await dropDatabases(TEST_DATABASE_URL, MODULE_NAMES.map((module) => `${prefix}${module}`));
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
