/**
 * The `redis-lock` strategy's locks: one per product, `SET key token NX PX ttl` with a random
 * token, released by compare-and-delete in Lua (`scripts/unlock.lua`), waited for a bounded time.
 * A lock only keeps holders from treading on each other most of the time: what guards the stock
 * is the fencing token the holder writes in PostgreSQL (see the strategy).
 *
 * @remarks On ioredis, as the gate: it reconnects on its own and re-sends a script Redis lost.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { GateKeys } from './keys.js';

export interface StockLocksOptions {
  readonly keyPrefix?: string;
  /** How long a lock lives if its holder never releases it (a crash). */
  readonly ttlMs: number;
  /** How long a buyer waits for the lock before `CONTENTION`. */
  readonly waitMs: number;
  /** Told of each connection error (the client reconnects by itself meanwhile). */
  readonly onError?: (error: Error) => void;
}

type Unlock = (key: string, token: string) => Promise<number>;

/** Pause between two tries of a taken lock: short and jittered, so waiters do not move in step. */
const retryPauseMs = (): number => 1 + Math.random() * 4;

export class StockLocks {
  private readonly keys: GateKeys;

  private constructor(
    private readonly redis: Redis,
    private readonly options: StockLocksOptions,
  ) {
    this.keys = new GateKeys(options.keyPrefix);
  }

  static async open(url: string, options: StockLocksOptions): Promise<StockLocks> {
    const redis = new Redis(url, {
      lazyConnect: true,
      retryStrategy: (times) => Math.min(times * 50, 500),
      maxRetriesPerRequest: 2,
    });
    // Without a listener ioredis prints every failed reconnect attempt; the caller decides what to say.
    redis.on('error', (error: Error) => options.onError?.(error));
    try {
      await redis.connect();
      const lua = readFileSync(new URL('./scripts/unlock.lua', import.meta.url), 'utf8');
      redis.defineCommand('flashsale_unlock', { lua, numberOfKeys: 1 });
      await redis.script('LOAD', lua);
    } catch (error) {
      redis.disconnect();
      throw error;
    }
    return new StockLocks(redis, options);
  }

  get ready(): boolean {
    return this.redis.status === 'ready';
  }

  /** The lock's token once taken, or `null` when it stayed taken for the whole wait. */
  async acquire(productId: string): Promise<string | null> {
    const key = this.keys.stockLock(productId);
    const token = randomUUID();
    const until = Date.now() + this.options.waitMs;
    for (;;) {
      if ((await this.redis.set(key, token, 'PX', this.options.ttlMs, 'NX')) === 'OK') return token;
      if (Date.now() >= until) return null;
      await sleep(retryPauseMs());
    }
  }

  /** Releases the lock if it is still this token's; `false` when it expired meanwhile. */
  async release(productId: string, token: string): Promise<boolean> {
    const unlock = (this.redis as unknown as { flashsale_unlock: Unlock }).flashsale_unlock;
    return (await unlock.call(this.redis, this.keys.stockLock(productId), token)) === 1;
  }

  async close(): Promise<void> {
    await this.redis.quit();
  }
}
