/**
 * `optimistic`: the JPA `@Version` pattern. Read the product and its `version` without a lock,
 * check, then `UPDATE products … WHERE id = $1 AND version = $2`; zero rows means someone else
 * changed the row in between, so re-read and try again, at most `retries` more times with
 * jittered exponential backoff. When the retries run out the buyer gets `CONTENTION` (409 with
 * `Retry-After`): the strategy gave up before it could decide.
 *
 * @remarks What it costs: under a herd most attempts lose (every sale bumps `version` and fails
 * every buyer who read the old one), so the database does several reads and failed writes per
 * sale, and with bounded retries some stock can be left unsold while buyers are told to retry;
 * `docs/strategies.md` gives the measured figure. The version-checked update comes first in the
 * transaction, then the buyer's counter, the same lock order as `release_allocation`. No lock is
 * held between the read and the write (the connection is), and nothing is held during the backoff.
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
  LOST_RACE,
  NOT_FOUND,
  PostgresStockSteps,
  readProduct,
  refusal,
  rollBackWith,
  withRetries,
  type RetryOptions,
} from './postgres-stock.js';

/** `retries`: `OPTIMISTIC_RETRIES`. */
export type OptimisticOptions = RetryOptions;

export class OptimisticStrategy extends PostgresStockSteps implements StockStrategy {
  readonly name = 'optimistic';
  readonly safe = true;

  constructor(
    sql: Sql,
    private readonly options: OptimisticOptions,
  ) {
    super(sql);
  }

  reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    return withRetries(() => this.attempt(request), this.options);
  }

  /**
   * One attempt, as one short transaction on one connection (like a JPA `@Transactional` method):
   * read without a lock, check, then the version-checked write. Reading on the same connection as
   * the write keeps the window in which another sale can slip in to one round trip; reading
   * through the shared pool would leave it open for as long as the buyer queues for a connection.
   */
  private attempt(request: ReserveRequest): Promise<ReserveOutcome | typeof LOST_RACE> {
    return inTransaction<ReserveOutcome | typeof LOST_RACE>(
      this.sql,
      async (tx) => {
        const product = await readProduct(tx, request.productId, request.buyerId, false);
        if (!product) return NOT_FOUND;
        const refused = checkProduct(product, request);
        if (refused) return refused;
        const won = await tx`
          update products set remaining = remaining - ${request.quantity}, version = version + 1
           where id = ${request.productId} and version = ${product.version}
          returning remaining`;
        if (won.length === 0) return LOST_RACE;
        if (!(await claimBuyerUnits(tx, request, product.perBuyerLimit))) {
          rollBackWith(refusal('LIMIT_EXCEEDED', factsOf(product)));
        }
        // The version matched: nothing moved since the read.
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
