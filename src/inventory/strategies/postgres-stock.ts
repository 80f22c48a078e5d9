/**
 * The steps every PostgreSQL-backed strategy shares: release (cancel/expiry), confirm, reading an
 * allocation back, and turning a refusal row into a typed outcome. A strategy differs only in
 * how it takes the units; giving them back is one `release_allocation` call for all of them,
 * which also bumps `version` so the optimistic strategy sees the change.
 */
import type { Sql } from '../../infra/database.js';
import type { Allocation, AllocationStatus, ReserveOutcome, ReserveRefusal } from '../inventory.types.js';
import type { ConfirmOutcome, ReleasedAllocation, ReleaseStatus } from '../stock-strategy.js';

interface AllocationRow {
  id: string;
  product_id: string;
  buyer_id: string;
  quantity: number;
  amount_cents: number;
  status: AllocationStatus;
  expires_at: Date;
}

/** The refusal reasons a stock step reports from SQL. */
export type RefusalCode = Exclude<ReserveRefusal['reason'], 'CONTENTION'>;

export function toAllocation(row: AllocationRow): Allocation {
  return {
    id: row.id,
    productId: row.product_id,
    buyerId: row.buyer_id,
    quantity: row.quantity,
    amountCents: row.amount_cents,
    status: row.status,
    expiresAt: row.expires_at.toISOString(),
  };
}

/** Builds the typed refusal for a reason reported by SQL or by a strategy's own check. */
export function refusal(
  reason: RefusalCode,
  facts: { remaining: number; opensAt: Date | null; limit: number | null },
): ReserveRefusal {
  switch (reason) {
    case 'SOLD_OUT':
      return { ok: false, reason, remaining: Math.max(0, facts.remaining) };
    case 'PRODUCT_NOT_FOUND':
      return { ok: false, reason };
    case 'SALE_NOT_OPEN':
      return { ok: false, reason, opensAt: (facts.opensAt ?? new Date()).toISOString() };
    case 'SALE_ENDED':
      return { ok: false, reason };
    case 'LIMIT_EXCEEDED':
      return { ok: false, reason, limit: facts.limit ?? 0 };
  }
}

/** 23505: the allocation id is taken, i.e. this reservation was already made (a retry). */
export function isDuplicateAllocation(error: unknown): boolean {
  return (error as { code?: string }).code === '23505';
}

export abstract class PostgresStockSteps {
  constructor(protected readonly sql: Sql) {}

  async release(allocationId: string, status: ReleaseStatus, onlyIfExpired: boolean): Promise<ReleasedAllocation | null> {
    const [row] = await this.sql<{ product_id: string; buyer_id: string; quantity: number }[]>`
      select * from release_allocation(${allocationId}, ${status}, ${onlyIfExpired})`;
    return row ? { productId: row.product_id, buyerId: row.buyer_id, quantity: row.quantity } : null;
  }

  async confirm(allocationId: string): Promise<ConfirmOutcome> {
    const [paid] = await this.sql<AllocationRow[]>`
      update allocations set status = 'paid', settled_at = now()
       where id = ${allocationId} and status = 'held' and expires_at > now()
      returning *`;
    if (paid) return { ok: true, allocation: toAllocation(paid) };
    const existing = await this.allocation(allocationId);
    if (!existing) return { ok: false, reason: 'NOT_FOUND' };
    switch (existing.status) {
      case 'paid':
        return { ok: true, allocation: existing };
      case 'cancelled':
        return { ok: false, reason: 'CANCELLED' };
      case 'held':
      case 'expired':
        // Held but past its expiry: the sweeper has not got to it yet; it is expired all the same.
        return { ok: false, reason: 'EXPIRED' };
    }
  }

  /** The allocation made under `id`, if any (a retried reserve returns it). */
  async allocation(id: string): Promise<Allocation | null> {
    const [row] = await this.sql<AllocationRow[]>`select * from allocations where id = ${id}`;
    return row ? toAllocation(row) : null;
  }

  /** Outcome of a retried reserve whose allocation already exists. */
  protected async existingOutcome(id: string): Promise<ReserveOutcome> {
    const allocation = await this.allocation(id);
    if (!allocation) throw new Error(`allocation ${id} reported as duplicate but not found`);
    return { ok: true, allocation };
  }
}
