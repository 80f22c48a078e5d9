/**
 * Starts the floor endpoint (`floor.server.ts`) in a child process of its own, so the storm
 * against it costs the same cross-process work as the storm against the real server, and stops
 * it by its PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ChildEndpoint {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** Node arguments to run a sibling module, from `dist/` (.js) or from sources under vitest (.ts, via tsx). */
export function siblingScript(name: string): string[] {
  const here = fileURLToPath(import.meta.url);
  const extension = here.endsWith('.ts') ? '.ts' : '.js';
  const file = fileURLToPath(new URL(`./${name}${extension}`, import.meta.url));
  return extension === '.ts' ? ['--import', 'tsx', file] : [file];
}

export async function startFloor(): Promise<ChildEndpoint> {
  const child = spawn(process.execPath, siblingScript('floor.server'), { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    let buffered = '';
    const timer = setTimeout(() => reject(new Error('floor endpoint did not start within 15 s')), 15_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const line = buffered.split('\n')[0];
      if (buffered.includes('\n') && line !== undefined) {
        clearTimeout(timer);
        try {
          resolve((JSON.parse(line) as { port: number }).port);
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`floor endpoint exited with ${code}`));
    });
  }).catch(async (error: unknown) => {
    // It did not start as it should: it must not outlive the bench.
    await stopChild(child, 2000);
    throw error;
  });
  return { url: `http://127.0.0.1:${port}`, pid: child.pid ?? 0, stop: () => stopChild(child) };
}

/** SIGTERM to this child's PID, SIGKILL after `graceMs` if it has not exited. */
export function stopChild(child: ChildProcess, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    // child.kill signals this child's own PID and, unlike process.kill, does not throw when it
    // has exited in the meantime.
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
