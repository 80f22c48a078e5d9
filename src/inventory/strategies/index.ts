/**
 * Builds the stock strategies this process can run, from the stores it has. A strategy whose
 * store is not configured is listed with what it misses, so asking for it is a clear 400.
 */
import type { Sql } from '../../infra/database.js';
import type { StrategyName } from '../strategy-names.js';
import type { StockStrategy } from '../stock-strategy.js';
import { AtomicStrategy } from './atomic.strategy.js';
import { EventSourcedStrategy } from './event-sourced.strategy.js';
import { NaiveStrategy } from './naive.strategy.js';
import { OptimisticStrategy } from './optimistic.strategy.js';
import { PessimisticStrategy } from './pessimistic.strategy.js';
import { RedisLuaStrategy } from './redis-lua.strategy.js';
import { RedisLockStrategy } from './redis-lock.strategy.js';
import type { StockLocks } from '../redis/stock-locks.js';
import { QueueStrategy } from './queue.strategy.js';
import type { QueueLineOptions } from './queue-lines.js';

/** The queue's lines when the configuration names none (tests that build strategies alone). */
const DEFAULT_QUEUE: QueueLineOptions = { groupMax: 500, capacity: 20_000, waitMs: 5_000, soldOutMemoryMs: 250 };
import type { GateRebuilds } from '../redis/rebuild.js';
import type { RedisGate } from '../redis/gate.js';

export interface StrategyStores {
  readonly inventorySql: Sql;
  /** `NAIVE_GAP_MS`: the naive strategy's pause between read and write (default 5). */
  readonly naiveGapMs?: number;
  /** `OPTIMISTIC_RETRIES`: the optimistic strategy's retries before `CONTENTION` (default 3). */
  readonly optimisticRetries?: number;
  /** The queue strategy's lines (`QUEUE_*`, the sold-out memory from `SOLD_OUT_HINT_MS`). */
  readonly queue?: QueueLineOptions;
  /** Set when Redis / RabbitMQ are configured, so a missing strategy names the right cause. */
  readonly redisUrl?: string | undefined;
  readonly amqpUrl?: string | undefined;
  /** The product locks of the redis-lock strategy, when Redis is configured. */
  readonly redisLocks?: StockLocks | undefined;
  /** The Redis gate and its rebuilds, when both Redis and the broker are configured (redis-lua). */
  readonly redisLua?: { readonly gate: RedisGate; readonly rebuilds: GateRebuilds; readonly warn?: (message: string) => void } | undefined;
}

export interface StrategyRegistry {
  /** The strategy, or why this process cannot run it. */
  get(name: StrategyName): StockStrategy | { readonly unavailable: string };
  /** Names this process can run now. */
  available(): StrategyName[];
}

/** The settings each store-backed strategy needs, by the variable an operator sets. */
const NEEDS: Partial<Record<StrategyName, readonly ('REDIS_URL' | 'AMQP_URL')[]>> = {
  'redis-lua': ['REDIS_URL', 'AMQP_URL'],
  'redis-lock': ['REDIS_URL'],
};

/**
 * Retries of an event-sourced reservation whose sequence number was taken, before `CONTENTION`:
 * as many as `optimistic`'s default, whose race it shares (one sale moves every reader on).
 */
const EVENT_SOURCED_RETRIES = 3;

export function buildStrategies(stores: StrategyStores): StrategyRegistry {
  const sql = stores.inventorySql;
  const built = new Map<StrategyName, StockStrategy>([
    ['naive', new NaiveStrategy(sql, { gapMs: stores.naiveGapMs ?? 5 })],
    ['pessimistic', new PessimisticStrategy(sql)],
    ['optimistic', new OptimisticStrategy(sql, { retries: stores.optimisticRetries ?? 3 })],
    ['atomic', new AtomicStrategy(sql)],
    ['queue', new QueueStrategy(sql, stores.queue ?? DEFAULT_QUEUE)],
    ['event-sourced', new EventSourcedStrategy(sql, { retries: EVENT_SOURCED_RETRIES })],
  ]);
  if (stores.redisLocks) built.set('redis-lock', new RedisLockStrategy(sql, stores.redisLocks));
  if (stores.redisLua) built.set('redis-lua', new RedisLuaStrategy(stores.redisLua.gate, sql, stores.redisLua.rebuilds, stores.redisLua.warn));
  const configured = { REDIS_URL: stores.redisUrl !== undefined, AMQP_URL: stores.amqpUrl !== undefined };
  const missing = (name: StrategyName): string => {
    const unset = (NEEDS[name] ?? []).filter((variable) => !configured[variable]);
    if (unset.length > 0) {
      return `strategy "${name}" needs ${unset.join(' and ')}, which this server was started without`;
    }
    return `strategy "${name}" is not available in this build yet; available: ${[...built.keys()].join(', ')}`;
  };
  return {
    get: (name) => built.get(name) ?? { unavailable: missing(name) },
    available: () => [...built.keys()],
  };
}
