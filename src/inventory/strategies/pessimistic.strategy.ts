/**
 * `pessimistic`: the textbook ticket-desk transaction. `BEGIN; SELECT … FOR UPDATE` on the product
 * row; check the window, the buyer's limit (predicated upsert on `buyer_units`) and the stock;
 * decrement; insert the allocation; `COMMIT`.
 *
 * @remarks What it costs, honestly: the hot row stays locked across every round trip between the
 * `SELECT … FOR UPDATE` and the `COMMIT` (five of them), so buyers of one product are served one at
 * a time at the speed of the network and the app, and every loser of a herd queues for the lock
 * just to learn it is sold out. What it does not do: hold the lock, or the connection, for
 * anything but the stock step — payment and think time run after `COMMIT`. Locks are taken in
 * the same order as `release_allocation` (product row, then the buyer's counter), so a buyer
 * cancelling while buying cannot deadlock.
 */
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
} from './postgres-stock.js';

export class PessimisticStrategy extends PostgresStockSteps implements StockStrategy {
  readonly name = 'pessimistic';
  readonly safe = true;

  constructor(sql: Sql) {
    super(sql);
  }

  reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    return inTransaction<ReserveOutcome>(
      this.sql,
      async (tx) => {
        const product = await readProduct(tx, request.productId, request.buyerId, true);
        if (!product) return NOT_FOUND;
        const refused = checkProduct(product, request);
        // A refusal wrote nothing: committing it just ends the transaction and frees the lock.
        if (refused) return refused;
        if (!(await claimBuyerUnits(tx, request, product.perBuyerLimit))) return refusal('LIMIT_EXCEEDED', factsOf(product));
        await tx`
          update products set remaining = remaining - ${request.quantity}, version = version + 1
           where id = ${request.productId}`;
        return {
          ok: true,
          allocation: await insertAllocation(tx, request, product),
          remaining: product.remaining - request.quantity,
        };
      },
      () => this.existingOutcome(request.allocationId),
    );
  }
}
