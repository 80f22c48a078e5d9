/**
 * A `flashsale` command (`serve`, `worker`) run as its own process, on a test server's databases,
 * keys and queues, as it would run in production: what a drill kills with SIGKILL and starts
 * again. Run from the sources through tsx, so no build is needed. Every process started here is
 * stopped by its PID (`stopAll`), never by name.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../../src/config.js';
import { claimConnections, onSharedServer, poolConnections, TEST_POOL_SIZE } from './pg-budget.js';
import { ADMIN_TOKEN, TEST_DATABASE_URL } from './server.js';

const PROJECT = resolve(import.meta.dirname, '../..');
/** The secret `startTestServer` signs tokens with: buyers it creates are buyers of the process too. */
const TOKEN_SECRET = 'test-token-secret-0123456789-0123456789';

export interface FlashsaleProcess {
  readonly child: ChildProcess;
  /** What it printed so far (stdout and stderr). */
  output(): string;
  /** Sends `signal` and waits for the process to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

const started: ChildProcess[] = [];

/**
 * The environment of a process that shares `config`'s databases (on `TEST_DATABASE_URL` unless
 * `databaseUrl` says otherwise), data directory, tokens, Redis keys and queues.
 */
export function envOf(config: Config, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    DATABASE_URL: TEST_DATABASE_URL,
    DATABASE_PREFIX: config.databasePrefix,
    FLASHSALE_DATA_DIR: config.dataDir,
    ADMIN_TOKEN,
    TOKEN_SECRET,
    SEED_DEMO: 'false',
    REDIS_URL: config.redisUrl ?? '',
    AMQP_URL: config.amqpUrl ?? '',
    REDIS_KEY_PREFIX: config.redisKeyPrefix,
    QUEUE_PREFIX: config.queuePrefix,
    CONFIRM_TIMEOUT_MS: String(config.confirmTimeoutMs),
    RECONCILE_INTERVAL_MS: '3600000',
    // The suite's budget of PostgreSQL connections (pg-budget.ts): 10 here.
    DB_POOL_SIZE: String(TEST_POOL_SIZE),
    LOG_LEVEL: 'warn',
    // As the test servers: storms send many requests per buyer.
    RATE_LIMIT_PER_SECOND: '0',
    BUYER_MAX_IN_FLIGHT: '0',
    ...extra,
  };
}

/** Starts `flashsale <command>` and resolves once it printed `ready` (its start-up line). */
export async function startFlashsale(command: 'serve' | 'worker', env: Record<string, string>, ready: string): Promise<FlashsaleProcess> {
  // Its pools count against this file's share of the shared PostgreSQL until it exits.
  const poolSize = Number(env['DB_POOL_SIZE'] ?? '10');
  const release = onSharedServer(env['DATABASE_URL'], TEST_DATABASE_URL)
    ? claimConnections(poolConnections(poolSize), `flashsale ${command}`)
    : () => undefined;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', command], {
    cwd: PROJECT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  child.once('exit', release);
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  for (let waited = 0; !output.includes(ready); waited += 25) {
    if (waited > 60_000 || child.exitCode !== null || child.signalCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`flashsale ${command} did not start:\n${output}`);
    }
    await sleep(25);
  }
  return {
    child,
    output: () => output,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((done) => child.once('exit', done));
      child.kill(signal);
      await exited;
    },
  };
}

/** A port free on 127.0.0.1 now, for a process that must come back on the same one. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((done) => server.close(() => done()));
  return port;
}

/** Kills (SIGKILL, by PID) every process started here that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all(
    started.map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGKILL');
      await exited;
    }),
  );
}
