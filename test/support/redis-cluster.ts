/**
 * Starts a throw-away three-master Redis Cluster for one test file: three `redis-server` child
 * processes on ports the OS picked, in their own temp directory, joined by
 * `redis-cli --cluster create`, and ready once every node says `cluster_state:ok`. `stop()` kills
 * exactly those processes, by PID, and removes the directory: nothing else on the machine (the
 * shared 127.0.0.1:6379, another file's cluster) is touched.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';

export interface ClusterNode {
  readonly host: string;
  readonly port: number;
}

export interface RedisCluster {
  /** The three masters, as a client's seed nodes. */
  readonly nodes: readonly ClusterNode[];
  /** Kills the servers this started (by PID, SIGTERM then SIGKILL) and removes their directory. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const MASTERS = 3;
/** Start-up takes about a second; past this something is wrong (a port taken, a server stuck). */
const READY_TIMEOUT_MS = 20_000;
const STOP_GRACE_MS = 5_000;

const execFileAsync = promisify(execFile);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface ServerProcess {
  readonly port: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** What it wrote to stderr: a bad option is reported there, before the log file is open. */
  readonly stderr: () => string;
}

export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'flashsale-redis-cluster-'));
  const servers: ServerProcess[] = [];
  // A safety net for a worker that exits without running afterAll: no redis-server outlives it.
  const killOnExit = (): void => {
    for (const server of servers) if (isRunning(server.child)) server.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killOnExit);
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((server) => stopServer(server.child)));
    rmSync(dir, { recursive: true, force: true });
    process.off('exit', killOnExit);
  };

  // One client per node, to see it up and then joined; they reconnect until the server listens.
  let clients: Redis[] = [];
  try {
    // Each node needs two ports: clients', and the cluster bus's. The bus defaults to port + 10000,
    // which for an OS-picked port may be taken or past 65535, so it is picked too (`--cluster-port`).
    const ports = await freePorts(MASTERS * 2);
    for (let i = 0; i < MASTERS; i++) servers.push(startServer(dir, ports[2 * i] as number, ports[2 * i + 1] as number));
    const nodes = servers.map((server): ClusterNode => ({ host: HOST, port: server.port }));
    clients = nodes.map((node) => {
      const client = new Redis({ ...node, retryStrategy: () => 50, maxRetriesPerRequest: null });
      // Refused connections until the server listens are expected; the deadline bounds the wait.
      client.on('error', () => undefined);
      return client;
    });
    await unlessAServerDies(servers, joinCluster(nodes, clients));
    return { nodes, stop };
  } catch (error) {
    await stop();
    throw error;
  } finally {
    for (const client of clients) client.disconnect();
  }
}

/**
 * Ports the OS says are free, all held open at once so they differ. One may be taken before the
 * server binds it: the server then exits, and start-up fails saying so, with its log.
 */
async function freePorts(count: number): Promise<number[]> {
  const listeners = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const listener = createServer();
          listener.once('error', reject);
          listener.listen(0, HOST, () => resolve(listener));
        }),
    ),
  );
  const ports = listeners.map((listener) => (listener.address() as AddressInfo).port);
  await Promise.all(listeners.map((listener) => new Promise((resolve) => listener.close(resolve))));
  return ports;
}

function startServer(dir: string, port: number, busPort: number): ServerProcess {
  const logFile = join(dir, `redis-${port}.log`);
  // In memory only (no RDB, no AOF), on loopback, its cluster state in the temp directory.
  const child = spawn(
    'redis-server',
    [
      ...['--port', String(port), '--cluster-enabled', 'yes', '--cluster-port', String(busPort)],
      ...['--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no'],
      ...['--bind', HOST, '--dir', dir, '--logfile', logFile],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-2_000)));
  // A spawn failure (no redis-server on PATH) is reported by unlessAServerDies; this keeps it from
  // being an unhandled 'error' event as well.
  child.on('error', () => undefined);
  return { port, logFile, child, stderr: () => stderr };
}

/** Waits for every node to answer, joins them (all 16384 slots over three masters), waits for `ok`. */
async function joinCluster(nodes: readonly ClusterNode[], clients: readonly Redis[]): Promise<void> {
  await Promise.all(clients.map((client) => client.ping()));
  const addresses = nodes.map((node) => `${node.host}:${node.port}`);
  await execFileAsync('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], {
    timeout: READY_TIMEOUT_MS,
  });
  // `create` returns once the nodes agree on the config; each node says `ok` once it sees every
  // slot served, and only then would a client's first CLUSTER SLOTS be complete.
  for (;;) {
    const infos = await Promise.all(clients.map((client) => client.cluster('INFO')));
    const allOk = infos.every((info) => /^cluster_state:ok\r?$/m.test(info) && /^cluster_known_nodes:3\r?$/m.test(info));
    if (allOk) return;
    await sleep(50);
  }
}

/** `work`, unless a server exits or fails to spawn first, or the deadline passes. */
function unlessAServerDies<T>(servers: readonly ServerProcess[], work: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanups: (() => void)[] = [];
    const settle = (): void => cleanups.forEach((cleanup) => cleanup());
    const fail = (error: Error): void => {
      settle();
      reject(error);
    };
    for (const { port, logFile, child, stderr } of servers) {
      const onExit = (code: number | null, signal: string | null): void =>
        fail(
          new Error(`redis-server on port ${port} exited (${signal ?? `code ${code}`}) during start-up:\n${stderr()}${tail(logFile)}`),
        );
      const onError = (error: Error): void => fail(new Error(`redis-server on port ${port} did not start: ${error.message}`));
      child.once('exit', onExit).once('error', onError);
      cleanups.push(() => child.off('exit', onExit).off('error', onError));
    }
    const deadline = setTimeout(() => fail(new Error(`the Redis Cluster was not ready within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    cleanups.push(() => clearTimeout(deadline));
    work.then(
      (value) => {
        settle();
        resolve(value);
      },
      (error: unknown) => fail(error instanceof Error ? error : new Error(String(error))),
    );
  });
}

function isRunning(child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null;
}

/** SIGTERM (with nothing to save Redis exits at once), SIGKILL if it has not after a grace period. */
async function stopServer(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

function tail(logFile: string): string {
  try {
    return readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n');
  } catch {
    return '(no log)';
  }
}
