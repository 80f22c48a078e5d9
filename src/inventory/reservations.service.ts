/**
 * Reservations: the purchase path's way into a product's stock strategy, and the holds it
 * makes (release, expiry, confirm, the expiry sweeper). What this process remembers to answer
 * faster (`StockMemory`) is asked before the store and learns from its answers.
 */
import { canonicalId } from '../infra/canonical-id.js';
import type { Sql } from '../infra/database.js';
import type { Allocation, ReserveOutcome, ReserveRequest } from './inventory.types.js';
import type { ProductStrategies } from './product-strategies.js';
import type { ConfirmOutcome, ReleasedAllocation } from './stock-strategy.js';
import { readAllocation } from './strategies/postgres-stock.js';
import type { StockMemory } from './stock-memory.js';

export class Reservations {
  constructor(
    private readonly sql: Sql,
    private readonly strategies: ProductStrategies,
    private readonly memory: StockMemory,
  ) {}

  async reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    // Every strategy keys by these (rows, Redis keys, lines, hints): refused in any other spelling.
    canonicalId(request.allocationId, 'orderId');
    canonicalId(request.buyerId, 'buyerId');
    const strategy = await this.strategies.ofProduct(request.productId);
    if (!strategy) return { ok: false, reason: 'PRODUCT_NOT_FOUND' };
    // Refused from memory before the store: most buyers of a drop end here.
    const known = this.memory.refusal(request.productId);
    // A strategy with its own copy of the terms (redis-lua) answers in microseconds, with no lanes
    // in front, and keeps a keyed answer itself: a keyed request it answers even when memory knows
    // the product is sold out (the key may have an answer of its own), without its product's step.
    if (strategy.terms !== undefined) {
      if (known) return request.idempotencyKey === undefined ? known : strategy.reserve(request, known);
      return this.memory.learnFrom(request.productId, () => strategy.reserve(request));
    }
    if (known) return known;
    const ask = (): Promise<ReserveOutcome> => strategy.reserve(request);
    const outcome = await (strategy.ordersItsOwnLine === true ? this.memory.learnFrom(request.productId, ask) : this.memory.reserve(request.productId, ask));
    if (outcome.ok || (outcome.reason !== 'LIMIT_EXCEEDED' && outcome.reason !== 'SOLD_OUT' && outcome.reason !== 'INSUFFICIENT_FUNDS')) {
      return outcome;
    }
    // A retry of a reservation that was made (its answer lost to a failure) is refused by its own
    // unit: over the limit, sold out by it, or its funds spoken for by it. The store said no without looking at the id, so
    // look now: a live allocation under it is this reservation's (idempotent by id). Only refusals
    // from the store pay this read; at a drop most are refused from memory.
    const made = await this.allocation(request.allocationId);
    return made !== null && (made.status === 'held' || made.status === 'paid') ? { ok: true, allocation: made } : outcome;
  }

  async release(allocationId: string): Promise<ReleasedAllocation | null> {
    const held = await this.strategies.ofAllocation(allocationId);
    return this.memory.unitsBack(held ? await held.strategy.release(allocationId, 'cancelled', false, held.productId) : null);
  }

  async expire(allocationId: string): Promise<ReleasedAllocation | null> {
    const held = await this.strategies.ofAllocation(allocationId);
    return this.memory.unitsBack(held ? await held.strategy.release(allocationId, 'expired', true, held.productId) : null);
  }

  /** Cancels a hold that is only in the product's strategy so far (see `InventoryClient.withdraw`). */
  async withdraw(allocationId: string, productId: string): Promise<ReleasedAllocation | null> {
    const strategy = await this.strategies.ofProduct(productId);
    return this.memory.unitsBack(strategy ? await strategy.release(allocationId, 'cancelled', false, productId) : null);
  }

  /**
   * Cancels a hold granted outside the database (a strategy with its own copy of the terms), if
   * it is one; a product under any other strategy keeps its allocations as they are.
   */
  async withdrawPending(allocationId: string, productId: string): Promise<ReleasedAllocation | null> {
    const strategy = await this.strategies.ofProduct(productId);
    if (strategy?.terms === undefined) return null;
    return this.memory.unitsBack(await strategy.release(allocationId, 'cancelled', false, productId));
  }

  async confirm(allocationId: string): Promise<ConfirmOutcome> {
    const held = await this.strategies.ofAllocation(allocationId);
    return held ? held.strategy.confirm(allocationId, held.productId) : { ok: false, reason: 'NOT_FOUND' };
  }

  allocation(allocationId: string): Promise<Allocation | null> {
    return readAllocation(this.sql, allocationId);
  }

  /**
   * Returns the units of every hold whose expiry has passed (by the database's clock) to stock.
   * Run every second and at start-up, so holds that expired while the server was down come back.
   */
  async sweepExpired(batchSize = 500): Promise<ReleasedAllocation[]> {
    const released: ReleasedAllocation[] = [];
    for (;;) {
      // The product comes with the id, so each hold costs one release, not a lookup as well.
      const due = await this.sql<{ id: string; product_id: string }[]>`
        select id, product_id from allocations where status = 'held' and expires_at <= now()
        order by expires_at limit ${batchSize}`;
      let changed = 0;
      for (const { id, product_id: productId } of due) {
        const strategy = await this.strategies.ofProduct(productId);
        const done = this.memory.unitsBack(strategy ? await strategy.release(id, 'expired', true, productId) : null);
        if (done) {
          released.push(done);
          changed += 1;
        }
      }
      // A full batch of which nothing moved (another sweeper got there first): next time.
      if (due.length < batchSize || changed === 0) return released;
    }
  }
}
