/**
 * `atomic`: one predicated `UPDATE products SET remaining = remaining - q WHERE id = $id AND
 * remaining >= q …` plus the per-buyer counter and the allocation row, in one short transaction
 * (`reserve_atomic` in `../functions.sql`, one round trip). The database's row lock is the only guard,
 * held for the microseconds between the update and the commit, never across a round trip to the
 * app. Locks are taken product row first, then the buyer's row, like every other stock step. The
 * sale is made on the price, hold and limit of the row it locks, not of the plain read before it.
 *
 * @remarks Losers that can be refused from a plain read (sold out, not open, over the limit) are
 * refused before any write, so a herd of 1,000 buyers for 1 unit costs 1 write.
 */
import type { Sql } from '../../infra/database.js';
import { outcomeUnknown } from '../../infra/store-errors.js';
import type { ReserveOutcome, ReserveRequest } from '../inventory.types.js';
import type { StockStrategy } from '../stock-strategy.js';
import { isDuplicateAllocation, PostgresStockSteps, reserveOutcome, type RefusalCode } from './postgres-stock.js';

interface ReserveRow {
  outcome: 'OK' | RefusalCode;
  remaining: number;
  amount_cents: number;
  expires_at: Date | null;
  opens_at: Date | null;
  buyer_limit: number | null;
}

export class AtomicStrategy extends PostgresStockSteps implements StockStrategy {
  readonly name = 'atomic';
  readonly safe = true;

  constructor(sql: Sql) {
    super(sql);
  }

  async reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    let row: ReserveRow | undefined;
    try {
      [row] = await this.sql<ReserveRow[]>`
        select * from reserve_atomic(${request.allocationId}, ${request.productId}, ${request.buyerId}, ${request.quantity},
                                     ${request.spendableCents ?? null}::int8)`;
    } catch (error) {
      if (isDuplicateAllocation(error)) return this.existingOutcome(request.allocationId);
      throw error;
    }
    // The function always returns one row: none means the connection was cut around its reply
    // (seen with a backend terminated mid-storm), and the reservation may have committed.
    if (!row) throw outcomeUnknown('inventory', request.allocationId);
    return reserveOutcome(row.outcome, row, request);
  }
}
