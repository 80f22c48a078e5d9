/**
 * `queue`: first come, first served, and many purchases per commit of the hot row. Every
 * reservation waits in its product's line in this process (`queue-lines.ts`); the line's single
 * writer has everything waiting decided by one call of `reserve_group` (`../functions.sql`): one
 * statement, one round trip, one transaction that locks the product row once, grants in arrival
 * order while stock and each buyer's limit allow, and writes one decrement and every allocation.
 * PostgreSQL's row lock is still the only guard: the line orders and groups, it never decides.
 *
 * A group whose statement fails is never sent again blindly: a store that was not reached did
 * nothing (every request hears `STORE_UNAVAILABLE`); a connection lost mid-statement is settled by
 * looking the ids up (the statement is one transaction: all of it committed or none); any other
 * failure splits the group in halves, so one bad request cannot sink the others.
 */
import type { Sql } from '../../infra/database.js';
import { storeFault, storeUnavailable } from '../../infra/store-errors.js';
import type { ReserveOutcome, ReserveRequest } from '../inventory.types.js';
import type { ReleasedAllocation, ReleaseStatus, StockStrategy } from '../stock-strategy.js';
import { PostgresStockSteps, readAllocation, reserveOutcome, type RefusalCode } from './postgres-stock.js';
import { QueueLines, type QueueLineOptions } from './queue-lines.js';

interface GroupRow {
  allocation_id: string;
  outcome: 'OK' | 'EXISTS' | RefusalCode;
  remaining: number;
  amount_cents: number;
  expires_at: Date | null;
  opens_at: Date | null;
  buyer_limit: number | null;
}

export class QueueStrategy extends PostgresStockSteps implements StockStrategy {
  readonly name = 'queue';
  readonly safe = true;
  /** The line orders this strategy's work itself: no reserve lanes in front of it. */
  readonly ordersItsOwnLine = true;
  private readonly lines: QueueLines;

  constructor(sql: Sql, options: QueueLineOptions) {
    super(sql);
    this.lines = new QueueLines((productId, group) => this.decide(productId, group), options);
  }

  reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    return this.lines.enqueue(request);
  }

  override async release(allocationId: string, status: ReleaseStatus, onlyIfExpired: boolean): Promise<ReleasedAllocation | null> {
    const released = await super.release(allocationId, status, onlyIfExpired);
    if (released) this.lines.unitsBack(released.productId);
    return released;
  }

  unitsBack(productId: string): void {
    this.lines.unitsBack(productId);
  }

  /** Requests waiting in this process's lines. */
  get waiting(): number {
    return this.lines.waiting;
  }

  private async decide(productId: string, group: readonly ReserveRequest[]): Promise<ReserveOutcome[]> {
    let rows: GroupRow[];
    try {
      rows = await this.sql<GroupRow[]>`
        select * from reserve_group(${productId}, ${this.sql.array(group.map((r) => r.allocationId))}::uuid[],
                                    ${this.sql.array(group.map((r) => r.buyerId))}::uuid[],
                                    ${this.sql.array(group.map((r) => r.quantity))}::int[],
                                    -- postgres.js cannot send a null inside an array: '' stands for "not known".
                                    (select array_agg(nullif(s, '')::int8 order by n)
                                       from unnest(${this.sql.array(group.map((r) => (r.spendableCents === undefined ? '' : String(r.spendableCents))))}::text[])
                                            with ordinality as u(s, n)))`;
    } catch (error) {
      return this.afterFailure(productId, group, error);
    }
    return Promise.all(rows.map((row, index) => this.outcomeOf(row, group[index] as ReserveRequest)));
  }

  private async afterFailure(productId: string, group: readonly ReserveRequest[], error: unknown): Promise<ReserveOutcome[]> {
    const fault = storeFault(error);
    // Not reached: nothing was done; the caller names the store.
    if (fault === 'unavailable') throw error;
    if (fault === 'unknown') {
      // One transaction: if any id has its allocation, the whole group committed. A failed lookup
      // leaves every outcome unknown (the caller says so, naming each order).
      const ids = group.map((request) => request.allocationId);
      const made = await this.sql<{ id: string }[]>`select id from allocations where id = any(${this.sql.array(ids)}::uuid[])`;
      if (made.length === 0) throw storeUnavailable('inventory');
      // Committed: the ids not granted were refused for a reason now lost; deciding them again is
      // safe (nothing was taken for them), and gives them their reason.
      const granted = new Set(made.map((row) => row.id));
      const again = group.filter((request) => !granted.has(request.allocationId));
      const decided = again.length === 0 ? [] : await this.decide(productId, again);
      const byId = new Map(again.map((request, index) => [request.allocationId, decided[index] as ReserveOutcome]));
      return Promise.all(group.map((request) => byId.get(request.allocationId) ?? this.existing(request.allocationId)));
    }
    if (group.length === 1) throw error;
    const half = Math.ceil(group.length / 2);
    const first = await this.decide(productId, group.slice(0, half));
    return [...first, ...(await this.decide(productId, group.slice(half)))];
  }

  private async outcomeOf(row: GroupRow, request: ReserveRequest): Promise<ReserveOutcome> {
    if (row.outcome === 'EXISTS') return this.existing(request.allocationId);
    return reserveOutcome(row.outcome, row, request);
  }

  private async existing(id: string): Promise<ReserveOutcome> {
    const allocation = await readAllocation(this.sql, id);
    if (!allocation) throw new Error(`allocation ${id} reported as made but not found`);
    return { ok: true, allocation, again: true };
  }
}
