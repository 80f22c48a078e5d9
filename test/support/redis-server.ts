/**
 * A throw-away `redis-server` for one test file, on a port the OS picked, without persistence:
 * a test may flush or restart it without touching the shared 127.0.0.1:6379. `stop()` kills
 * exactly that process, by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';

export interface PrivateRedis {
  readonly url: string;
  /** FLUSHALL: every key gone, as after a restart without persistence. */
  flushAll(): Promise<void>;
  /** Kills the server (SIGKILL, as a crash) and starts it again on the same port, empty. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function spawnRedis(port: number): ChildProcess {
  return spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
}

async function exitOf(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess = spawnRedis(port);
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const url = `redis://127.0.0.1:${port}`;
  // Retries until the server listens; the deadline bounds the wait.
  const client = new Redis(url, { retryStrategy: () => 50, maxRetriesPerRequest: null });
  client.on('error', () => undefined);
  const started = await Promise.race([
    client.ping().then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000)),
  ]);
  if (!started) {
    client.disconnect();
    child.kill('SIGKILL');
    throw new Error(`redis-server on port ${port} did not start`);
  }
  return {
    url,
    flushAll: async () => {
      await client.flushall();
    },
    restart: async (downMs = 200) => {
      await exitOf(child, 'SIGKILL');
      await new Promise((resolve) => setTimeout(resolve, downMs));
      child = spawnRedis(port);
      // The client reconnects by itself; answered once the new server listens.
      await client.ping();
    },
    stop: async () => {
      client.disconnect();
      await exitOf(child, 'SIGTERM');
      process.off('exit', killOnExit);
    },
  };
}
