/**
 * `event-sourced`: every change of a product's stock is an event appended to the product's own
 * stream (`stock_events`: `stocked`, `reserved`, `released`, `expired`, `purchased`), numbered
 * 1, 2, 3, … with a number unique per product. A reservation projects what is available from the
 * latest snapshot plus the events after it, decides, and appends `reserved` as the next number
 * (`reserve_event_sourced` in `../functions.sql`, one round trip). If another writer took that
 * number first, nothing was written: the attempt read a stale stream, so it reads again and
 * decides again, at most `retries` more times with jittered backoff, then answers `CONTENTION`.
 * Every event's number is unique, so two decisions made on the same stream can never both land.
 *
 * A snapshot of the totals is written with every `stock_snapshot_every()`th event (100), so a
 * reservation reads one snapshot and fewer than 100 events, never the whole history. The
 * allocation (the hold) and `products.remaining` are written in the event's transaction, so
 * orders, the sweeper and the audit read them as for any other strategy, and replaying the stream
 * from event 1 gives `remaining` back. Release, expiry and confirm append their event after
 * settling the allocation's row, so each allocation ends at most once (a unique index says so too).
 *
 * @remarks The per-buyer limit is projected from the buyer's own events, in the same read as the
 * stock, rather than kept in the shared `buyer_units` counter: the next number then guards both
 * the stock and the limit with one check (a buyer racing themself appends at most one of two
 * decisions made on the same stream), the units are counted whatever the limit was when they were
 * taken (`buyer_units` counts only while a limit is set), and a reservation writes one row fewer.
 * The buyer's events are read through their own index; they are few (a buyer holds at most the
 * limit at once) but not snapshotted.
 *
 * What it costs: under a drop many attempts clash, as with `optimistic` (every sale moves the
 * stream on under every buyer who read it), and a clash is known only once the winner commits.
 * Three writes per sale (event, product row, allocation), plus a snapshot every 100 events.
 */
import type { Sql, Tx } from '../../infra/database.js';
import { outcomeUnknown } from '../../infra/store-errors.js';
import type { Allocation, ReserveOutcome, ReserveRequest } from '../inventory.types.js';
import type { ReleasedAllocation, ReleaseStatus, StockLog, StockStrategy } from '../stock-strategy.js';
import {
  isDuplicateAllocation,
  LOST_RACE,
  PostgresStockSteps,
  reserveOutcome,
  toAllocation,
  withRetries,
  type AllocationRow,
  type RefusalCode,
  type RetryOptions,
} from './postgres-stock.js';

export type EventSourcedOptions = RetryOptions;

interface ReserveRow {
  outcome: 'OK' | 'CLASH' | RefusalCode;
  remaining: number;
  amount_cents: number;
  expires_at: Date | null;
  opens_at: Date | null;
  buyer_limit: number | null;
}


/** 40001: `reserve_event_sourced` found the product's terms changed between its read and its write. */
function isTermsChanged(error: unknown): boolean {
  return (error as { code?: string }).code === '40001';
}

export class EventSourcedStrategy extends PostgresStockSteps implements StockStrategy {
  readonly name = 'event-sourced';
  readonly safe = true;
  readonly log: StockLog = {
    stocked: async (tx: Tx, productId: string, units: number) => {
      await tx`select append_stock_event(${productId}, 'stocked', ${units}, null, null)`;
    },
  };
  constructor(
    sql: Sql,
    private readonly options: EventSourcedOptions,
  ) {
    super(sql);
  }

  reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    return withRetries(() => this.attempt(request), this.options);
  }

  private async attempt(request: ReserveRequest): Promise<ReserveOutcome | typeof LOST_RACE> {
    let row: ReserveRow | undefined;
    try {
      [row] = await this.sql<ReserveRow[]>`
        select outcome, remaining, amount_cents, expires_at, opens_at, buyer_limit
          from reserve_event_sourced(${request.allocationId}, ${request.productId}, ${request.buyerId}, ${request.quantity},
                                     ${request.spendableCents ?? null}::int8)`;
    } catch (error) {
      if (isDuplicateAllocation(error)) return this.existingOutcome(request.allocationId);
      if (isTermsChanged(error)) return LOST_RACE;
      throw error;
    }
    // The function always returns one row: none means the connection was cut around its reply
    // (seen with a backend terminated mid-storm), and the reservation may have committed.
    if (!row) throw outcomeUnknown('inventory', request.allocationId);
    if (row.outcome === 'CLASH') return LOST_RACE;
    return reserveOutcome(row.outcome, row, request);
  }

  override async release(allocationId: string, status: ReleaseStatus, onlyIfExpired: boolean): Promise<ReleasedAllocation | null> {
    const [row] = await this.sql<{ product_id: string; buyer_id: string; quantity: number }[]>`
      select * from release_event_sourced(${allocationId}, ${status}, ${onlyIfExpired})`;
    return row ? { productId: row.product_id, buyerId: row.buyer_id, quantity: row.quantity } : null;
  }

  protected override async markPaid(allocationId: string): Promise<Allocation | null> {
    const [paid] = await this.sql<AllocationRow[]>`select * from confirm_event_sourced(${allocationId})`;
    return paid ? toAllocation(paid) : null;
  }
}
