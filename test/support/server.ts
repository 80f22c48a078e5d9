/**
 * Starts a real flashsale server for a test file: its own throw-away module databases (random
 * prefix) on the 127.0.0.1 PostgreSQL, a random port, the modules wired through a JSON hop, and a
 * clean-up that drops them. The server logs what each route answers; stopping it fails if the
 * OpenAPI document does not list one of those answers, so every test file checks the contract of
 * what it provokes. Its pools are small ({@link TEST_POOL_SIZE}) and claimed from the file's share of
 * PostgreSQL connections (`pg-budget.ts`).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loadConfig, MODULE_NAMES, type Config } from '../../src/config.js';
import { dropDatabases } from '../../src/infra/database.js';
import { orderEventsExchange } from '../../src/orders/outbox-relay.js';
import { queueNames } from '../../src/pipeline/broker.js';
import type { RedisGate } from '../../src/inventory/redis/gate.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { Api } from './api.js';
import { AnswerLog, type OpenApiDocument } from './contract.js';
import { claimConnections, onSharedServer, poolConnections, TEST_POOL_SIZE } from './pg-budget.js';

export const TEST_DATABASE_URL = process.env['TEST_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const TEST_REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
export const TEST_AMQP_URL = process.env['TEST_AMQP_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672';

/**
 * Overrides that give a test server the Redis gate, the order pipeline and the order events
 * relay, under key, queue and exchange names of its own (removed when it stops), so test files
 * never see each other's data.
 */
export function withPipeline(): Partial<Config> {
  const tag = randomBytes(5).toString('hex');
  return { redisUrl: TEST_REDIS_URL, amqpUrl: TEST_AMQP_URL, redisKeyPrefix: `t:${tag}:`, queuePrefix: `t.${tag}.` };
}
export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestServer {
  readonly server: RunningServer;
  readonly api: Api;
  readonly config: Config;
  /** What each route answered so far. */
  readonly answers: AnswerLog;
  /** The server's own OpenAPI document (what `/docs/json` serves). */
  document(): OpenApiDocument;
  /**
   * Stops the server; `keepData` keeps the databases (to start again on them). Rejects, once
   * stopped, when the server gave an answer its OpenAPI document does not list.
   */
  stop(options?: { keepData?: boolean }): Promise<void>;
}

export async function startTestServer(overrides: Partial<Config> = {}, env: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'flashsale-test-'));
  const prefix = overrides.databasePrefix ?? `t_${randomBytes(5).toString('hex')}_`;
  const config = loadConfig(
    // The suite's budget of PostgreSQL connections (pg-budget.ts): 10 connections a server. Set as
    // the variable, so what follows from it (RESERVE_LANES) follows as it does in production.
    { LOG_LEVEL: 'warn', DB_POOL_SIZE: String(TEST_POOL_SIZE), ...env },
    {
      databaseUrl: TEST_DATABASE_URL,
      databasePrefix: prefix,
      dataDir,
      adminToken: ADMIN_TOKEN,
      tokenSecret: 'test-token-secret-0123456789-0123456789',
      seedDemo: false,
      port: 0,
      // Every module call crosses JSON, as it would between processes: the contracts carry plain
      // data. TEST_MODULE_HOP=http sends each over a real HTTP hop instead (the split-mode subset).
      moduleHop: process.env['TEST_MODULE_HOP'] === 'http' ? 'http' : 'json',
      // Storms send many requests per buyer, many at once: the limits are on only in the tests about them.
      rateLimitPerSecond: 0,
      buyerMaxInFlight: 0,
      // Tests sign up many users from 127.0.0.1; the tests of the limit turn it on.
      signupRateLimitPerMinute: 0,
      // Tests read a figure right after the change it shows; the test of the cache turns it on.
      metricsCacheMs: 0,
      ...overrides,
    },
  );
  const shared = MODULE_NAMES.filter((module) => onSharedServer(config.moduleDatabaseUrls[module] ?? config.databaseUrl, TEST_DATABASE_URL));
  const release = claimConnections(poolConnections(config.dbPoolSize, shared), `the test server ${prefix}`);
  const answers = new AnswerLog();
  const server = await startServer(config, { observe: (request, reply, payload) => answers.record(request, reply, payload) }).catch(
    (error: unknown) => {
      release();
      throw error;
    },
  );
  const api = new Api(server.url, ADMIN_TOKEN);
  // @fastify/swagger types its document for every OpenAPI version; the check reads only what it names.
  const document = (): OpenApiDocument => server.app.swagger() as unknown as OpenApiDocument;
  return {
    server,
    api,
    config,
    answers,
    document,
    stop: async (options = {}) => {
      const undocumented = answers.undocumented(document());
      await api.close();
      await server.close();
      release();
      if (server.system.config.amqpUrl !== undefined && !options.keepData) await removePipelineData(server.system.config);
      if (!options.keepData) {
        await dropDatabases(TEST_DATABASE_URL, MODULE_NAMES.map((module) => `${prefix}${module}`));
        await rm(dataDir, { recursive: true, force: true });
      }
      if (undocumented.length > 0) {
        throw new Error(`answers the OpenAPI document does not list:\n  ${undocumented.join('\n  ')}`);
      }
    },
  };
}

/** Deletes a test server's Redis keys, queues and order events exchange (its own prefixes). */
async function removePipelineData(config: Config): Promise<void> {
  const { Redis } = await import('ioredis');
  const { Connection } = await import('rabbitmq-client');
  if (config.redisUrl !== undefined) {
    const redis = new Redis(config.redisUrl);
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${config.redisKeyPrefix}*`, 'COUNT', 1000);
        if (keys.length > 0) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
  }
  const rabbit = new Connection(config.amqpUrl ?? TEST_AMQP_URL);
  try {
    const names = queueNames(config.queuePrefix);
    for (const queue of [names.placed, names.dead]) await rabbit.queueDelete({ queue });
    for (const exchange of [orderEventsExchange(config.queuePrefix), names.drain]) await rabbit.exchangeDelete({ exchange });
  } finally {
    await rabbit.close();
  }
}

/** The Redis gate of a test server started with the order pipeline (`withPipeline`). */
export function gateOf(t: TestServer): RedisGate {
  const found = t.server.system.pipeline?.gate;
  if (!found) throw new Error('this test server has no Redis gate (start it withPipeline())');
  return found;
}
