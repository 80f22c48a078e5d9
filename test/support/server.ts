/**
 * Starts a real flashsale server for a test file: its own throw-away module databases (random
 * prefix) on the 127.0.0.1 PostgreSQL, a random port, the modules wired through a JSON hop, and a
 * clean-up that drops them.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig, MODULE_NAMES, type Config } from '../../src/config.js';
import { dropDatabases } from '../../src/infra/database.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { Api } from './api.js';

export const TEST_DATABASE_URL = process.env['TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestServer {
  readonly server: RunningServer;
  readonly api: Api;
  readonly config: Config;
  /** Stops the server; `keepData` keeps the databases (to start again on them). */
  stop(options?: { keepData?: boolean }): Promise<void>;
}

export async function startTestServer(overrides: Partial<Config> = {}, env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'flashsale-test-'));
  const prefix = overrides.databasePrefix ?? `t_${randomBytes(5).toString('hex')}_`;
  const config = loadConfig(
    { LOG_LEVEL: 'warn', ...env },
    {
      databaseUrl: TEST_DATABASE_URL,
      databasePrefix: prefix,
      dataDir,
      adminToken: ADMIN_TOKEN,
      tokenSecret: 'test-token-secret-0123456789-0123456789',
      seedDemo: false,
      port: 0,
      // The shared PostgreSQL allows 100 connections and two test files run at once.
      dbPoolSize: 10,
      // Every module call crosses JSON, as it would between processes: the contracts carry plain data.
      moduleHop: 'json',
      ...overrides,
    },
  );
  const server = await startServer(config);
  const api = new Api(server.url, ADMIN_TOKEN);
  return {
    server,
    api,
    config,
    stop: async (options = {}) => {
      await api.close();
      await server.close();
      if (!options.keepData) {
        await dropDatabases(TEST_DATABASE_URL, MODULE_NAMES.map((module) => `${prefix}${module}`));
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
