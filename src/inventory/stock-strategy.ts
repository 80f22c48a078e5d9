/**
 * The stock-strategy interface: the one place a concurrency strategy plugs into inventory.
 *
 * What every strategy must guarantee:
 * - Never oversell: after any interleaving of `reserve`, `release` and `confirm`, units held plus
 *   units paid never exceed units stocked, and no buyer holds more than the product's limit
 *   (the `naive` strategy breaks this on purpose, and is marked `safe: false`).
 * - All or nothing: a reservation of `quantity` units takes all of them or none.
 * - Idempotent by allocation id: reserving again under an id that already holds returns that
 *   allocation and takes nothing more; releasing or confirming twice changes nothing the second time.
 *   A strategy may refuse a repeat `SOLD_OUT` or `LIMIT_EXCEEDED` because of its own earlier
 *   unit (its checks come before the id's); inventory's `Reservations.reserve` then finds the
 *   allocation by its id and answers with it, so no strategy reads the id on every refusal.
 * - A refusal names its reason (`SOLD_OUT`, `PRODUCT_NOT_FOUND`, `SALE_NOT_OPEN`, `SALE_ENDED`,
 *   `LIMIT_EXCEEDED`, `CONTENTION`), never an opaque "0 rows".
 * - A database connection or lock is held only for the stock step itself: nothing slow (payment,
 *   think time) ever runs inside a strategy call.
 * - Expiry is judged by the store's clock, never the app's.
 *
 * What is deliberately left out: recording the order (orders does that after a successful
 * reserve), money (users), and fairness between buyers (only the `queue` strategy promises FCFS).
 */
import type { Tx } from '../infra/database.js';
import type { StrategyName } from './strategy-names.js';
import type { Allocation, AllocationStatus, Product, ProductStats, ReserveOutcome, ReserveRefusal, ReserveRequest } from './inventory.types.js';

/** The refusal a sold-out hint gives (see `StockStrategy.reserve`). */
export type SoldOutRefusal = Extract<ReserveRefusal, { reason: 'SOLD_OUT' }>;

export interface ReleasedAllocation {
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
}

export type ConfirmOutcome =
  | { readonly ok: true; readonly allocation: Allocation }
  | { readonly ok: false; readonly reason: 'NOT_FOUND' | 'EXPIRED' | 'CANCELLED' };

export type ReleaseStatus = 'cancelled' | 'expired';

/**
 * A strategy that decides outside PostgreSQL (redis-lua) keeps its own copy of a product's terms:
 * the catalogue tells it of every change, with PostgreSQL's values after the change.
 */
export interface TermsMirror {
  /** A product was created (`version`: its row's). A failure here leaves it to be loaded on first use. */
  created(product: Product, version: number): Promise<void>;
  /**
   * Before units are taken away, under the product row's lock (`stocked` is the new total,
   * `version` the row's after the change): a refusal names what remains.
   */
  beforeRemoving(productId: string, stocked: number, version: number): Promise<{ readonly remaining: number } | null>;
  /**
   * The row's values at `version`: after a change committed (terms, stock added, the sale's end),
   * applied before the admin hears "done"; or (`resync`, under the row's lock) PostgreSQL's values
   * applied again whatever the copy has. Changes may arrive out of order: the newest version wins.
   */
  changed(product: Product, version: number, resync?: boolean): Promise<void>;
  /** Units free to buy now, as the strategy counts them (`null`: it cannot say now). */
  remaining(productId: string): Promise<number | null>;
  /** Units by state as the strategy counts them, ahead of the database by what is in flight (`null`: it cannot say now). */
  stats(productId: string): Promise<ProductStats | null>;
  /**
   * Of these allocations (held or paid in the database), the ones the strategy's copy does not
   * count against the stock (`null`: it cannot say now). For the audit: each is a unit the copy
   * may sell again.
   */
  uncounted(productId: string, allocationIds: readonly string[]): Promise<readonly string[] | null>;
  /**
   * The buyer and status of the hold under this id in the strategy's copy (`null`: none), read
   * by the id alone (one field, never a scan). For a hold the database may not have yet; throws
   * `STORE_UNAVAILABLE` when the copy cannot be read now.
   */
  hold(productId: string, allocationId: string): Promise<{ readonly buyerId: string; readonly status: AllocationStatus } | null>;
}

/**
 * A strategy that keeps a log of every change to a product's stock (event-sourced) records the
 * catalogue's changes in it too: the stock a product is created with, and what an admin adds or
 * removes. Called in the transaction that writes the product's row, before the row is written.
 */
export interface StockLog {
  /** Records `units` added to the product's stock (negative: removed). */
  stocked(tx: Tx, productId: string, units: number): Promise<void>;
}

export interface StockStrategy {
  readonly name: StrategyName;
  /** `false` only for `naive`, which exists to show the audit catching an oversell. */
  readonly safe: boolean;
  /** Set by a strategy that keeps its own copy of the terms (see `TermsMirror`). */
  readonly terms?: TermsMirror;
  /** Set by a strategy that lines its reservations up itself (`queue`): no reserve lanes in front of it. */
  readonly ordersItsOwnLine?: boolean;
  /** Units of the product came back by an admin's change (a strategy that remembers "sold out" forgets it). */
  unitsBack?(productId: string): void;
  /** Set by a strategy that logs every change of stock (see `StockLog`). */
  readonly log?: StockLog;
  /**
   * Takes `quantity` units for the buyer under `allocationId`, or says why not. `soldOut` is given
   * only to a strategy with `terms` (which keeps keyed answers itself) when this process knows the
   * product has nothing left: it answers with it without its store, except to a request whose
   * `Idempotency-Key` has an answer already, which gets that answer.
   */
  reserve(request: ReserveRequest, soldOut?: SoldOutRefusal): Promise<ReserveOutcome>;
  /**
   * Ends a held allocation and returns its units to stock and to the buyer's limit.
   * With `onlyIfExpired`, only when its expiry has passed by the store's clock.
   * Returns what was released, or `null` when the allocation was not held (already settled).
   */
  release(allocationId: string, status: ReleaseStatus, onlyIfExpired: boolean, productId: string): Promise<ReleasedAllocation | null>;
  /** Turns a hold into a sale, unless it expired by the store's clock or was cancelled. */
  confirm(allocationId: string, productId: string): Promise<ConfirmOutcome>;
}
