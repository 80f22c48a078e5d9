/**
 * `naive`: read the product, check in TypeScript, wait `gapMs`, then write back
 * `remaining = <the value read> - q` with no lock and no version check. Unsafe on purpose: two
 * buyers who read the same value both "take" the last unit, and the second write silently
 * overwrites the first (a lost update). It exists so the audit has something to catch.
 *
 * @remarks It still reports every refusal reason and writes the allocation and the buyer's counter
 * in one transaction, exactly like the safe strategies, so the oversell shows up in the audit as
 * `OVERSOLD` (more units allocated than stocked) or `STOCK_MISMATCH` (a lost update of
 * `remaining`) rather than as missing rows. The per-buyer limit is still the predicated upsert: the
 * lab's point is the stock race, not the limit. Never a default; the server warns when a product
 * uses it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../../infra/database.js';
import type { ReserveOutcome, ReserveRequest } from '../inventory.types.js';
import type { StockStrategy } from '../stock-strategy.js';
import {
  checkProduct,
  claimBuyerUnits,
  factsOf,
  insertAllocation,
  inTransaction,
  NOT_FOUND,
  PostgresStockSteps,
  readProduct,
  refusal,
  rollBackWith,
} from './postgres-stock.js';

export interface NaiveOptions {
  /** Pause between the read and the write, so the race shows reliably (`NAIVE_GAP_MS`). */
  readonly gapMs: number;
}

export class NaiveStrategy extends PostgresStockSteps implements StockStrategy {
  readonly name = 'naive';
  readonly safe = false;

  constructor(
    sql: Sql,
    private readonly options: NaiveOptions,
  ) {
    super(sql);
  }

  async reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    // 1. Read, no lock, no transaction.
    const product = await readProduct(this.sql, request.productId, request.buyerId, false);
    if (!product) return NOT_FOUND;
    const refused = checkProduct(product, request);
    if (refused) return refused;
    // 2. The gap: other buyers read the same `remaining` meanwhile. No connection is held here.
    if (this.options.gapMs > 0) await sleep(this.options.gapMs);
    // 3. Write back what was read, minus q: the lost update.
    return inTransaction(
      this.sql,
      async (tx) => {
        // Product row first, then the buyer's, like every other stock step (no deadlock with a
        // cancel): this strategy is unsafe on purpose about stock, not about its locks.
        await tx`
          update products set remaining = ${product.remaining - request.quantity}, version = version + 1
           where id = ${request.productId}`;
        if (!(await claimBuyerUnits(tx, request, product.perBuyerLimit))) rollBackWith(refusal('LIMIT_EXCEEDED', factsOf(product)));
        return { ok: true, allocation: await insertAllocation(tx, request, product) } as const;
      },
      () => this.existingOutcome(request.allocationId),
    );
  }
}
