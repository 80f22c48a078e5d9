/**
 * `flashsale up`: the split topology on this machine, for a demo. One PostgreSQL (the embedded
 * one unless `DATABASE_URL` is set) holds the three module databases; the users service runs as
 * a process of its own (`serve --service users`) and the API process (`serve`, with `USERS_URL`,
 * which also runs the worker when `REDIS_URL` and `AMQP_URL` are set) reaches it over HTTP. Each
 * child gets the database URL, the install's service token and token secret; `up` prints each
 * address, and on Ctrl-C (or when either child stops) stops both by PID, then the database.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from './config.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './infra/embedded-postgres.js';
import { ADMIN_TOKEN, keptSecret, TOKEN_SECRET } from './infra/secrets.js';

/** How long a child may take to answer `/readyz` after it starts. */
const READY_WITHIN_MS = 60_000;

interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
}

export async function up(config: Config, log: (line: string) => void = console.log): Promise<number> {
  let embedded: EmbeddedDatabase | undefined;
  const children: Child[] = [];
  const stopAll = async (): Promise<void> => {
    for (const child of [...children].reverse()) {
      if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGTERM');
      await child.exited;
    }
    await embedded?.stop();
  };
  try {
    let databaseUrl = config.databaseUrl;
    if (databaseUrl === undefined) {
      embedded = await startEmbeddedPostgres({ directory: join(config.dataDir, 'pg'), announce: log });
      databaseUrl = embedded.url;
    }
    const tokenSecret = (await keptSecret(config.dataDir, TOKEN_SECRET, config.tokenSecret)).value;
    const admin = await keptSecret(config.dataDir, ADMIN_TOKEN, config.adminToken);
    const serviceToken = config.serviceToken ?? randomBytes(32).toString('hex');
    const usersPort = config.port + 1;
    const shared = {
      ...process.env,
      DATABASE_URL: databaseUrl,
      DATABASE_PREFIX: config.databasePrefix,
      SERVICE_TOKEN: serviceToken,
      TOKEN_SECRET: tokenSecret,
      ADMIN_TOKEN: admin.value,
    };
    const users = start('users', ['serve', '--service', 'users'], {
      ...shared,
      PORT: String(usersPort),
      INTERNAL_PORT: String(config.internalPort),
      FLASHSALE_DATA_DIR: join(config.dataDir, 'users'),
    });
    children.push(users);
    await untilReady(users, `http://127.0.0.1:${usersPort}/readyz`);
    const api = start('api', ['serve'], {
      ...shared,
      SERVICE: 'all',
      PORT: String(config.port),
      USERS_URL: `http://${config.internalHost}:${config.internalPort}`,
      FLASHSALE_DATA_DIR: config.dataDir,
    });
    children.push(api);
    await untilReady(api, `http://127.0.0.1:${config.port}/readyz`);
    log(`flashsale up: the API on http://${config.host}:${config.port} (admin token in ${config.dataDir}/admin-token)`);
    log(`  users service: health and metrics on http://127.0.0.1:${usersPort}, internal routes on http://${config.internalHost}:${config.internalPort}`);
    log(`  PostgreSQL: ${embedded === undefined ? 'DATABASE_URL' : 'embedded'}, databases ${config.databasePrefix}users, ${config.databasePrefix}inventory, ${config.databasePrefix}orders`);
    log('  Ctrl-C stops them all');
    const signalled = new Promise<string>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    const stopped = Promise.race(children.map((child) => child.exited.then(() => child.name)));
    const why = await Promise.race([signalled.then((signal) => `${signal}: stopping`), stopped.then((name) => `the ${name} process stopped; stopping the rest`)]);
    log(why);
    await stopAll();
    return why.startsWith('SIG') ? 0 : 1;
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/** Runs this same command (`node [its flags] <its script>`) with `args`, its output prefixed by `name`. */
function start(name: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const script = process.argv[1];
  if (script === undefined) throw new Error('flashsale up: cannot tell which script to run');
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = (stream: NodeJS.WritableStream) => (chunk: Buffer) => {
    for (const line of chunk.toString('utf8').split('\n')) if (line !== '') stream.write(`[${name}] ${line}\n`);
  };
  child.stdout?.on('data', prefix(process.stdout));
  child.stderr?.on('data', prefix(process.stderr));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { name, process: child, exited };
}

async function untilReady(child: Child, url: string): Promise<void> {
  const until = Date.now() + READY_WITHIN_MS;
  while (Date.now() < until) {
    if (child.process.exitCode !== null || child.process.signalCode !== null) throw new Error(`flashsale up: the ${child.name} process stopped while starting`);
    const ready = await fetch(url).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) return;
    await sleep(100);
  }
  throw new Error(`flashsale up: the ${child.name} process was not ready within ${READY_WITHIN_MS} ms`);
}
