/**
 * Rebuilds a product's gate keys from PostgreSQL when they are missing (Redis restarted or was
 * flushed, or the product was never loaded), without ever overselling:
 *
 * 1. Wait until nothing granted before the loss can still reach PostgreSQL: at least the confirm
 *    timeout since the keys were found missing (a publish in flight then is confirmed or given up
 *    by now) and the order pipeline drained.
 * 2. Under a Redis lock (only to spare duplicate work), read the product, its `remaining` and every
 *    allocation from PostgreSQL, and `load` them: terms, each buyer's units, every hold by order id
 *    (so a retry of a known order id finds its hold, not a second unit). `load` writes nothing over
 *    keys that are live again, so a second process or a starting server never overwrites counters.
 *
 * Until it is done, the strategy answers `STORE_UNAVAILABLE` (503 with `Retry-After`). Never from
 * configuration or a number kept in this process.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../../infra/database.js';
import type { AllocationStatus } from '../inventory.types.js';
import type { GateHold, RedisGate } from './gate.js';

export interface RebuildOptions {
  readonly gate: RedisGate;
  readonly sql: Sql;
  /** How long a publish may wait for its confirm (`CONFIRM_TIMEOUT_MS`). */
  readonly confirmTimeoutMs: number;
  /** Whether no placed order is waiting in, or being written from, the pipeline. */
  readonly drained: () => Promise<boolean>;
  readonly log: { info(message: string): void; warn(message: string): void };
}

/** How often a waiting rebuild looks again. */
const POLL_MS = 200;
/** The lock lives this long if its holder dies mid-rebuild. */
const LOCK_TTL_MS = 30_000;

interface ProductDump {
  stock: number;
  remaining: number;
  price_cents: number;
  per_buyer_limit: number | null;
  hold_seconds: number;
  opens_at: Date;
  closes_at: Date | null;
  ended_at: Date | null;
  accounts_before: Date | null;
  requires_funds: boolean;
  holds: { id: string; b: string; q: number; a: number; e: number; s: AllocationStatus; t: number }[];
}

export class GateRebuilds {
  private readonly running = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(private readonly options: RebuildOptions) {}

  /** Starts rebuilding the product's keys unless a rebuild of it runs here already. */
  start(productId: string): void {
    if (this.running.has(productId) || this.stopped) return;
    const run = this.run(productId).finally(() => this.running.delete(productId));
    this.running.set(productId, run);
  }

  /** Products being rebuilt now (for the metrics). */
  get inProgress(): number {
    return this.running.size;
  }

  /** Stops waiting rebuilds (shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.running.values()]);
  }

  private async run(productId: string): Promise<void> {
    const missingSince = Date.now();
    this.options.log.warn(`redis-lua: the gate's keys of product ${productId} are missing; rebuilding them from PostgreSQL once the pipeline has drained`);
    while (!this.stopped) {
      try {
        if (Date.now() - missingSince >= this.options.confirmTimeoutMs && (await this.options.drained()) && (await this.rebuild(productId))) {
          return;
        }
      } catch (error) {
        this.options.log.warn(`redis-lua: rebuilding product ${productId} failed (${(error as Error).message}); trying again`);
      }
      await sleep(POLL_MS);
    }
  }

  /** One attempt under the lock; `true` when the keys are there now (loaded here, or by another). */
  private async rebuild(productId: string): Promise<boolean> {
    const { gate, sql } = this.options;
    const token = randomUUID();
    if (!(await gate.lockRebuild(productId, token, LOCK_TTL_MS))) return false;
    try {
      const [dump] = await sql<ProductDump[]>`
        select p.stock, p.remaining, p.price_cents, p.per_buyer_limit, p.hold_seconds, p.opens_at, p.closes_at, p.ended_at,
               p.accounts_before, p.requires_funds,
               coalesce((select jsonb_agg(jsonb_build_object(
                          'id', a.id, 'b', a.buyer_id, 'q', a.quantity, 'a', a.amount_cents,
                          'e', (extract(epoch from a.expires_at) * 1000)::int8, 's', a.status,
                          't', (extract(epoch from a.created_at) * 1000)::int8))
                           from allocations a where a.product_id = p.id), '[]'::jsonb) as holds
          from products p where p.id = ${productId}`;
      if (!dump) return true;
      const buyerUnits: Record<string, number> = {};
      const holds: GateHold[] = dump.holds.map((hold) => {
        if (hold.s === 'held' || hold.s === 'paid') buyerUnits[hold.b] = (buyerUnits[hold.b] ?? 0) + hold.q;
        return { orderId: hold.id, buyerId: hold.b, quantity: hold.q, amountCents: hold.a, expiresAt: hold.e, status: hold.s, madeAt: hold.t };
      });
      const loaded = await gate.load(productId, {
        remaining: dump.remaining,
        stocked: dump.stock,
        priceCents: dump.price_cents,
        perBuyerLimit: dump.per_buyer_limit,
        holdSeconds: dump.hold_seconds,
        opensAt: dump.opens_at.toISOString(),
        closesAt: dump.closes_at?.toISOString() ?? null,
        endedAt: dump.ended_at?.toISOString() ?? null,
        accountsCreatedBefore: dump.accounts_before?.toISOString() ?? null,
        requiresFunds: dump.requires_funds,
        buyerUnits,
        holds,
      });
      if (loaded) this.options.log.info(`redis-lua: rebuilt product ${productId} from PostgreSQL (${dump.remaining} remaining, ${holds.length} holds)`);
      return true;
    } finally {
      await gate.unlockRebuild(productId, token).catch(() => undefined);
    }
  }
}
