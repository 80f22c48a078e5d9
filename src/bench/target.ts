/**
 * The server under test when no `--target` is given: `node dist/cli.js serve` as a child process,
 * on a port we pick, with a throw-away data directory, databases of its own (on the embedded
 * PostgreSQL that bench starts, or on `DATABASE_URL` under a random prefix), and the admin token
 * we set. Bench keeps the database URL it gave the child, to read `pg_stat_database`/`pg_locks`.
 * With `REDIS_URL` and `AMQP_URL` in bench's environment the child inherits them (and so has
 * redis-lua), under Redis keys and queues of its own that are removed when it stops.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dropDatabases } from '../infra/database.js';
import { freePort, startEmbeddedPostgres, type EmbeddedDatabase } from '../infra/embedded-postgres.js';
import { stopChild } from './floor.js';
import { newPipelineNamespace, removePipelineNamespace } from './pipeline-namespace.js';

export interface BenchTarget {
  readonly url: string;
  readonly adminToken: string;
  /** Where the module databases live, for DB work; `undefined`: "n/a". */
  readonly db: { readonly baseUrl: string; readonly prefix: string } | undefined;
  /** PID of the child server, when bench started it. */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

export interface ChildServerOptions {
  /** The environment the child inherits (bench's own, from the CLI). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** A server to create the module databases on; `undefined` starts an embedded one. */
  readonly databaseUrl: string | undefined;
  /** `REDIS_URL` / `AMQP_URL` as bench's configuration read them (the child inherits them through `env`). */
  readonly redisUrl: string | undefined;
  readonly amqpUrl: string | undefined;
  readonly paymentDelayMs: number;
  readonly log: (line: string) => void;
}

const READY_TIMEOUT_MS = 90_000;

function cliScript(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) return ['--import', 'tsx', fileURLToPath(new URL('../cli.ts', import.meta.url))];
  return [fileURLToPath(new URL('../cli.js', import.meta.url))];
}

export async function startChildServer(options: ChildServerOptions): Promise<BenchTarget> {
  const dataDir = await mkdtemp(join(tmpdir(), 'flashsale-bench-'));
  let embedded: EmbeddedDatabase | undefined;
  const prefix = `bench_${randomBytes(4).toString('hex')}_`;
  const stores = { redisUrl: options.redisUrl, amqpUrl: options.amqpUrl };
  const pipeline = stores.redisUrl !== undefined || stores.amqpUrl !== undefined ? newPipelineNamespace() : undefined;
  const cleanUp = async (): Promise<void> => {
    if (pipeline) await removePipelineNamespace(pipeline, stores, options.log);
    if (embedded) await embedded.stop().catch(() => undefined);
    else if (options.databaseUrl !== undefined) {
      await dropDatabases(options.databaseUrl, ['users', 'inventory', 'orders'].map((m) => `${prefix}${m}`)).catch(() => undefined);
    }
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    let baseUrl = options.databaseUrl;
    if (baseUrl === undefined) {
      options.log('bench: starting a throw-away embedded PostgreSQL');
      embedded = await startEmbeddedPostgres({ directory: join(dataDir, 'pg'), ephemeral: true });
      baseUrl = embedded.url;
    }
    const port = await freePort();
    const adminToken = randomBytes(24).toString('hex');
    const env: Record<string, string> = {};
    for (const [name, value] of Object.entries(options.env)) if (value !== undefined) env[name] = value;
    Object.assign(env, {
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: baseUrl,
      DATABASE_PREFIX: prefix,
      FLASHSALE_DATA_DIR: dataDir,
      ADMIN_TOKEN: adminToken,
      TOKEN_SECRET: randomBytes(32).toString('hex'),
      LOG_LEVEL: 'warn',
      SEED_DEMO: 'false',
      PAYMENT_DELAY_MS: String(options.paymentDelayMs),
      SWEEP_INTERVAL_MS: '250',
    });
    if (pipeline) {
      Object.assign(env, {
        REDIS_KEY_PREFIX: pipeline.redisKeyPrefix,
        QUEUE_PREFIX: pipeline.queuePrefix,
        // Its queues are its own: no worker elsewhere consumes them, so the child must.
        WORKER: 'true',
      });
    }
    delete env['USERS_DATABASE_URL'];
    delete env['INVENTORY_DATABASE_URL'];
    delete env['ORDERS_DATABASE_URL'];
    const child = spawn(process.execPath, [...cliScript(), 'serve'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitReady(url, () => child.exitCode !== null || child.signalCode !== null);
    } catch (error) {
      await stopChild(child, 5000);
      throw error;
    }
    const names = pipeline ? ` (Redis keys ${pipeline.redisKeyPrefix}*, queues ${pipeline.queuePrefix}orders.*)` : '';
    options.log(`bench: server pid ${child.pid ?? '?'} on ${url}${names}`);
    const db = { baseUrl, prefix };
    return {
      url,
      adminToken,
      db,
      pid: child.pid,
      stop: async () => {
        await stopChild(child);
        await cleanUp();
      },
    };
  } catch (error) {
    await cleanUp();
    throw error;
  }
}

async function waitReady(url: string, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (exited()) throw new Error('the flashsale server exited during start-up (see its log above)');
    try {
      const response = await fetch(`${url}/readyz`);
      await response.body?.cancel();
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the flashsale server was not ready within ${READY_TIMEOUT_MS / 1000} s`);
}
