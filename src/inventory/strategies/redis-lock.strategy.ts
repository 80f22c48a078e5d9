/**
 * `redis-lock`: a Redis lock per product around a read-modify-write in PostgreSQL. First the checks
 * that need no lock, on a plain read of the product and the buyer's units (no such product, the
 * window, the sale's end, the account's age, a limit the buyer's units already leave no room in,
 * stock and funds as they are now): a request they refuse never takes the lock nor writes the row,
 * so refused buyers cannot keep the ones who would be sold to waiting. Then the buyer takes
 * the product's lock (`SET NX PX` with a random token; waiting at most `waitMs`, else `CONTENTION`
 * with `Retry-After`), and:
 *
 * 1. claims a fencing token: the next number of PostgreSQL's `stock_fence` sequence, written on the
 *    product row, and reads the row in the same statement;
 * 2. checks window, limit and stock in TypeScript;
 * 3. writes `remaining = <value read> - q` in a short transaction, predicated on the row still
 *    carrying its fence (no newer holder claimed it) and its version (no cancel, expiry or admin
 *    change moved it), with the buyer's units and the allocation;
 *
 * and releases the lock by compare-and-delete. A holder whose lock expired mid-way (a pause, a
 * Redis restart) finds a newer fence and writes nothing: the fence, not the lock, guards the stock,
 * and it comes from a sequence, so a Redis restart cannot reset it. A write that lost only to a
 * cancel or an expiry reads again, under the same lock.
 */
import type { Sql } from '../../infra/database.js';
import { storeUnavailable } from '../../infra/store-errors.js';
import type { ReserveOutcome, ReserveRefusal, ReserveRequest } from '../inventory.types.js';
import type { StockLocks } from '../redis/stock-locks.js';
import type { StockStrategy } from '../stock-strategy.js';
import {
  checkProduct,
  claimBuyerUnits,
  factsOf,
  insertAllocation,
  inTransaction,
  NOT_FOUND,
  PostgresStockSteps,
  refusal,
  rollBackWith,
  productFactsColumns,
  toProductFacts,
  type ProductFactsRow,
} from './postgres-stock.js';

/** Writes that lost to a cancel or an expiry, read again under the same lock before giving up. */
const REREADS = 3;

type ClaimRow = ProductFactsRow & { fence: string };

/** Marks a write that found the row changed under it (nothing was written). */
const MOVED = Symbol('row moved');

export class RedisLockStrategy extends PostgresStockSteps implements StockStrategy {
  readonly name = 'redis-lock';
  readonly safe = true;

  /**
   * `afterRead`: runs between the read and the write (a drill's pause: a holder stalled there past
   * its lock's TTL is what the fence is for); `retryAfterSeconds`: of a `CONTENTION` answer.
   */
  constructor(
    sql: Sql,
    private readonly locks: StockLocks,
    private readonly options: { readonly retryAfterSeconds?: number; readonly afterRead?: () => Promise<void> } = {},
  ) {
    super(sql);
    this.retryAfterSeconds = options.retryAfterSeconds ?? 1;
  }

  private readonly retryAfterSeconds: number;

  async reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    const refused = await this.refusedWithoutLock(request);
    if (refused) return refused;
    if (!this.locks.ready) throw storeUnavailable('redis');
    const token = await this.locks.acquire(request.productId).catch(() => {
      throw storeUnavailable('redis');
    });
    if (token === null) return { ok: false, reason: 'CONTENTION', retryAfterSeconds: this.retryAfterSeconds };
    try {
      for (let read = 0; read <= REREADS; read += 1) {
        const outcome = await this.readModifyWrite(request);
        if (outcome !== MOVED) return outcome;
      }
      return { ok: false, reason: 'CONTENTION', retryAfterSeconds: this.retryAfterSeconds };
    } finally {
      // An expired lock is not an error: the fence kept the write safe. If Redis is gone, the lock
      // expires by its TTL.
      await this.locks.release(request.productId, token).catch(() => false);
    }
  }

  /**
   * The refusal a plain read already decides (`null`: go on to the lock). Every check is made
   * again under the lock: what this read saw may change before then, never in the buyer's favour
   * unchecked.
   */
  private async refusedWithoutLock(request: ReserveRequest): Promise<ReserveRefusal | null> {
    const [row] = await this.sql<(ProductFactsRow & { units: number })[]>`
      select ${productFactsColumns(this.sql, request.buyerId)},
             coalesce((select b.units from buyer_units b where b.product_id = p.id and b.buyer_id = ${request.buyerId}), 0) as units
        from products p where p.id = ${request.productId}`;
    if (!row) return NOT_FOUND;
    const product = toProductFacts(row);
    const refused = checkProduct(product, request);
    if (refused) return refused;
    if (product.perBuyerLimit !== null && row.units + request.quantity > product.perBuyerLimit) {
      return refusal('LIMIT_EXCEEDED', factsOf(product));
    }
    return null;
  }

  private async readModifyWrite(request: ReserveRequest): Promise<ReserveOutcome | typeof MOVED> {
    // 1. The fence and the read, in one statement, before the transaction: no row lock is held
    //    across the checks below.
    const [claim] = await this.sql<ClaimRow[]>`
      update products set fence = nextval('stock_fence') where id = ${request.productId}
      returning fence, ${productFactsColumns(this.sql, request.buyerId)}`;
    if (!claim) return NOT_FOUND;
    const product = toProductFacts(claim);
    // 2. The checks, in TypeScript.
    const refused = checkProduct(product, request);
    if (refused) return refused;
    await this.options.afterRead?.();
    // 3. The write, fenced.
    return inTransaction<ReserveOutcome | typeof MOVED>(
      this.sql,
      async (tx) => {
        const written = await tx`
          update products set remaining = ${product.remaining - request.quantity}, version = version + 1
           where id = ${request.productId} and fence = ${claim.fence} and version = ${product.version}
          returning fence`;
        if (written.length === 0) {
          const [now] = await tx<{ fence: string }[]>`select fence from products where id = ${request.productId}`;
          // A newer holder claimed the row: this holder's lock is gone; it must not write.
          if (now && now.fence !== claim.fence) {
            return { ok: false, reason: 'CONTENTION', retryAfterSeconds: this.retryAfterSeconds };
          }
          return MOVED;
        }
        if (!(await claimBuyerUnits(tx, request, product.perBuyerLimit))) {
          rollBackWith(refusal('LIMIT_EXCEEDED', factsOf(product)));
        }
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
