/**
 * A RabbitMQ virtual host of a drill's own, made with `rabbitmqctl` and deleted afterwards (with
 * every queue and exchange in it), so a drill that cuts, kills or floods the broker's clients
 * never touches another test's queues. AMQP itself cannot create a vhost, and the management
 * plugin (its HTTP API) is not enabled on the shared broker, so the CLI it ships with is used.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PrivateVhost {
  /** `base` with this vhost as its path. */
  readonly url: string;
  readonly name: string;
  remove(): Promise<void>;
}

async function rabbitmqctl(...args: string[]): Promise<void> {
  try {
    await run('rabbitmqctl', args, { timeout: 30_000 });
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new Error(`rabbitmqctl ${args.join(' ')} failed (the drills need rabbitmqctl for the broker they use): ${detail}`);
  }
}

/** Makes a vhost on the broker `base` points at, open to `base`'s user. */
export async function createVhost(base: string): Promise<PrivateVhost> {
  const name = `flashsale-drill-${randomBytes(4).toString('hex')}`;
  const url = new URL(base);
  const user = decodeURIComponent(url.username || 'guest');
  await rabbitmqctl('add_vhost', name);
  try {
    await rabbitmqctl('set_permissions', '-p', name, user, '.*', '.*', '.*');
  } catch (error) {
    await rabbitmqctl('delete_vhost', name).catch(() => undefined);
    throw error;
  }
  url.pathname = `/${encodeURIComponent(name)}`;
  return { url: url.toString(), name, remove: () => rabbitmqctl('delete_vhost', name) };
}
