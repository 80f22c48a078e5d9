/**
 * Rebuilds a product's gate keys from PostgreSQL when they are missing or partly missing (Redis
 * restarted, was flushed, or evicted one of them; or the product was never loaded), without ever
 * overselling:
 *
 * 1. Wait until nothing granted before the loss can still reach PostgreSQL: at least the confirm
 *    timeout since the keys were found missing (a publish in flight then is confirmed or given up
 *    by now) and the order pipeline drained.
 * 2. Under a Redis lock (so two processes never interleave their pages), clear whatever is left of
 *    the product's keys, then read the product and its allocations in one repeatable-read
 *    transaction that holds the row's key-share lock (a stock or terms change, which locks the row
 *    for update, waits, so it is either in what is read or applied to the loaded keys after), and
 *    write them page by page: every hold by order id (so a retry of a known order id finds its
 *    hold, not a second unit) and each buyer's units; last the terms and the markers that make
 *    the product loaded. Redis serves other products between pages.
 * 3. It succeeded only when the product is loaded afterwards (by this rebuild or another).
 *
 * Until it is done, the strategy answers `STORE_UNAVAILABLE` (503 with `Retry-After`). Never from
 * configuration or a number kept in this process.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { transaction, type Sql } from '../../infra/database.js';
import type { AllocationStatus } from '../inventory.types.js';
import type { RedisGate } from './gate.js';

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

interface ProductRow {
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
  version: string;
}

interface AllocationRow {
  id: string;
  b: string;
  q: number;
  a: number;
  e: string;
  s: AllocationStatus;
  t: string;
}

/** Below every UUID: where the first page starts. */
const FIRST_ID = '00000000-0000-0000-0000-000000000000';

/** Allocations read and written per page: one Lua call of this many holds keeps Redis responsive. */
export const REBUILD_PAGE = 1_000;

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

  /** One attempt under the lock; `true` when the product is loaded now (here, or by another process). */
  private async rebuild(productId: string): Promise<boolean> {
    const { gate, sql } = this.options;
    const token = randomUUID();
    if (!(await gate.lockRebuild(productId, token, LOCK_TTL_MS))) return false;
    try {
      // A Redis that lost this product's keys may have lost the key bindings too: stamped (and
      // known here) before the product sells again, so purchases check PostgreSQL's key rows.
      await gate.bindingsSince(true);
      const outcome = await transaction(sql, async (tx) => {
        await tx`set transaction isolation level repeatable read`;
        const [product] = await tx<ProductRow[]>`
          select stock, remaining, price_cents, per_buyer_limit, hold_seconds, opens_at, closes_at, ended_at,
                 accounts_before, requires_funds, version::text
            from products where id = ${productId} for key share`;
        if (!product) return 'absent' as const;
        if (!(await gate.rebuildBegin(productId, token))) return 'lock-lost' as const;
        let holds = 0;
        for (let after = FIRST_ID; ; ) {
          const page = await tx<AllocationRow[]>`
            select id, buyer_id as b, quantity as q, amount_cents as a, status as s,
                   (extract(epoch from expires_at) * 1000)::int8::text as e, (extract(epoch from created_at) * 1000)::int8::text as t
              from allocations where product_id = ${productId} and id > ${after}::uuid order by id limit ${REBUILD_PAGE}`;
          if (page.length === 0) break;
          const written = await gate.rebuildHolds(
            productId,
            token,
            LOCK_TTL_MS,
            page.map((row) => ({ orderId: row.id, buyerId: row.b, quantity: row.q, amountCents: row.a, expiresAt: Number(row.e), status: row.s, madeAt: Number(row.t) })),
          );
          if (!written) return 'lock-lost' as const;
          holds += page.length;
          after = page[page.length - 1]?.id ?? after;
          if (page.length < REBUILD_PAGE) break;
        }
        const loaded = await gate.load(
          productId,
          {
            remaining: product.remaining,
            stocked: product.stock,
            priceCents: product.price_cents,
            perBuyerLimit: product.per_buyer_limit,
            holdSeconds: product.hold_seconds,
            opensAt: product.opens_at.toISOString(),
            closesAt: product.closes_at?.toISOString() ?? null,
            endedAt: product.ended_at?.toISOString() ?? null,
            accountsCreatedBefore: product.accounts_before?.toISOString() ?? null,
            requiresFunds: product.requires_funds,
          },
          Number(product.version),
          token,
        );
        if (loaded === 'loaded') this.options.log.info(`redis-lua: rebuilt product ${productId} from PostgreSQL (${product.remaining} remaining, ${holds} holds)`);
        return loaded;
      });
      if (outcome === 'absent') return true;
      // Loaded nothing (the lock was lost to a slow page, say): success only if the product is loaded now.
      return await gate.isLoaded(productId);
    } finally {
      await gate.unlockRebuild(productId, token).catch(() => undefined);
    }
  }
}
