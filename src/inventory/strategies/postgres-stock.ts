/**
 * The steps every PostgreSQL-backed strategy shares: release (cancel/expiry), confirm, reading an
 * allocation back, and turning a refusal row into a typed outcome. A strategy differs only in
 * how it takes the units; giving them back is one `release_allocation` call for all of them,
 * which also bumps `version` so the optimistic strategy sees the change (`event-sourced`, which
 * records every step in its stock stream, brings its own release and confirm write).
 *
 * The strategies that take units from TypeScript (naive, pessimistic, optimistic) also share the
 * product read and its checks, the per-buyer claim and the allocation insert below, so they differ
 * only in how they guard `remaining`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type postgres from 'postgres';
import { transaction, type Sql, type Tx } from '../../infra/database.js';
import type { Allocation, AllocationStatus, ReserveOutcome, ReserveRefusal, ReserveRequest } from '../inventory.types.js';
import type { ConfirmOutcome, ReleasedAllocation, ReleaseStatus } from '../stock-strategy.js';

export interface AllocationRow {
  id: string;
  product_id: string;
  buyer_id: string;
  quantity: number;
  amount_cents: number;
  status: AllocationStatus;
  expires_at: Date;
}

/** The refusal reasons a stock step reports from SQL. */
export type RefusalCode = Exclude<ReserveRefusal['reason'], 'CONTENTION' | 'KEY_REUSED'>;

/** The allocation made under this id (the order id), or `null`. */
export async function readAllocation(db: Queryable, id: string): Promise<Allocation | null> {
  const [row] = await db<AllocationRow[]>`select * from allocations where id = ${id}`;
  return row ? toAllocation(row) : null;
}

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

/** What a refusal reports, from the product read and the request. */
export interface RefusalFacts {
  readonly remaining: number;
  readonly opensAt: Date | null;
  readonly limit: number | null;
  /** What the refused hold would have cost (the two refusals about funds). */
  readonly amountCents?: number;
  /** The buyer's spendable balance the request said. */
  readonly spendableCents?: number | undefined;
}

/** Builds the typed refusal for a reason reported by SQL or by a strategy's own check. */
export function refusal(reason: RefusalCode, facts: RefusalFacts): ReserveRefusal {
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
    case 'ACCOUNT_TOO_NEW':
    case 'FUNDS_UNKNOWN':
      return { ok: false, reason };
    case 'INSUFFICIENT_FUNDS':
      return { ok: false, reason, amountCents: facts.amountCents ?? 0, spendableCents: facts.spendableCents ?? 0 };
  }
}

/** What a stock function answers a reservation with (`reserve_atomic`, `reserve_group`, `reserve_event_sourced`). */
export interface ReserveRow {
  readonly remaining: number;
  readonly amount_cents: number;
  readonly expires_at: Date | null;
  readonly opens_at: Date | null;
  readonly buyer_limit: number | null;
}

/** The request's outcome from its row: the hold it was granted, or the refusal with its facts. */
export function reserveOutcome(outcome: 'OK' | RefusalCode, row: ReserveRow, request: ReserveRequest): ReserveOutcome {
  if (outcome !== 'OK') {
    return refusal(outcome, {
      remaining: row.remaining,
      opensAt: row.opens_at,
      limit: row.buyer_limit,
      amountCents: row.amount_cents,
      spendableCents: request.spendableCents,
    });
  }
  return {
    ok: true,
    allocation: {
      id: request.allocationId,
      productId: request.productId,
      buyerId: request.buyerId,
      quantity: request.quantity,
      amountCents: row.amount_cents,
      status: 'held',
      expiresAt: (row.expires_at ?? new Date()).toISOString(),
    },
    remaining: row.remaining,
  };
}

/** Marks an attempt that lost a race (a version, a stream's next number) and wrote nothing. */
export const LOST_RACE = Symbol('lost race');

/** How a strategy that loses races retries: how often, how far apart, what it says when it gives up. */
export interface RetryOptions {
  /** Attempts after the first before answering `CONTENTION`. */
  readonly retries: number;
  /** Backoff before retry n (0-based) is uniform in [0, baseBackoffMs · 2ⁿ) ("full jitter"). */
  readonly baseBackoffMs?: number;
  /** `Retry-After` of a `CONTENTION` answer. */
  readonly retryAfterSeconds?: number;
}

/** Runs `attempt` until it does not lose its race, at most `retries` more times, then `CONTENTION`. */
export async function withRetries(attempt: () => Promise<ReserveOutcome | typeof LOST_RACE>, options: RetryOptions): Promise<ReserveOutcome> {
  for (let tried = 0; ; tried += 1) {
    const outcome = await attempt();
    if (outcome !== LOST_RACE) return outcome;
    if (tried >= options.retries) return { ok: false, reason: 'CONTENTION', retryAfterSeconds: options.retryAfterSeconds ?? 1 };
    await sleep(Math.random() * (options.baseBackoffMs ?? 5) * 2 ** tried);
  }
}

/** A pool or a transaction: the shared steps run on either. */
export type Queryable = Sql | Tx;

/** What a strategy reads of a product before it decides; the window is judged by the database's clock. */
export interface ProductFacts {
  readonly remaining: number;
  readonly version: number;
  readonly priceCents: number;
  readonly holdSeconds: number;
  readonly perBuyerLimit: number | null;
  readonly opensAt: Date;
  readonly ended: boolean;
  readonly notOpen: boolean;
  /** The buyer's account is not older than the product's `accountsCreatedBefore` (judged by the database). */
  readonly tooNew: boolean;
  readonly requiresFunds: boolean;
}

/** A product row's columns as the stock steps read them (`readProduct`, and the redis-lock's claim). */
export interface ProductFactsRow {
  remaining: number;
  version: number;
  price_cents: number;
  hold_seconds: number;
  per_buyer_limit: number | null;
  opens_at: Date;
  ended: boolean;
  not_open: boolean;
  too_new: boolean;
  requires_funds: boolean;
}

/**
 * The columns of `readProduct` (and of the redis-lock's claim, which reads them in its fencing
 * update): the terms and the facts judged by the database's clock and the buyer's id.
 */
export function productFactsColumns(db: Queryable, buyerId: string): postgres.PendingQuery<postgres.Row[]> {
  return db`remaining, version, price_cents, hold_seconds, per_buyer_limit, opens_at, requires_funds,
           ended_at is not null or (closes_at is not null and closes_at <= now()) as ended,
           opens_at > now() as not_open,
           accounts_before is not null and coalesce(account_created_at(${buyerId}) >= accounts_before, true) as too_new`;
}

/**
 * Reads the facts a reservation of `buyerId`'s is decided on. `lock` adds `FOR UPDATE`: the row
 * stays locked until the surrounding transaction ends (pessimistic).
 */
export async function readProduct(db: Queryable, productId: string, buyerId: string, lock: boolean): Promise<ProductFacts | null> {
  const [row] = await db<ProductFactsRow[]>`
    select ${productFactsColumns(db, buyerId)}
      from products where id = ${productId}
    ${lock ? db`for update` : db``}`;
  return row ? toProductFacts(row) : null;
}

export function toProductFacts(row: ProductFactsRow): ProductFacts {
  return {
    remaining: row.remaining,
    version: row.version,
    priceCents: row.price_cents,
    holdSeconds: row.hold_seconds,
    perBuyerLimit: row.per_buyer_limit,
    opensAt: row.opens_at,
    ended: row.ended,
    notOpen: row.not_open,
    tooNew: row.too_new,
    requiresFunds: row.requires_funds,
  };
}

/**
 * The checks every strategy makes before it writes, in `reserve_atomic`'s order: window, the
 * account's age, the request against the limit, stock, funds (the buyer's own units are claimed
 * in the write). `null`: go ahead.
 */
export function checkProduct(product: ProductFacts, request: ReserveRequest): ReserveRefusal | null {
  const facts = factsOf(product);
  const { quantity, spendableCents } = request;
  if (product.ended) return refusal('SALE_ENDED', facts);
  if (product.notOpen) return refusal('SALE_NOT_OPEN', facts);
  if (product.tooNew) return refusal('ACCOUNT_TOO_NEW', facts);
  if (product.perBuyerLimit !== null && quantity > product.perBuyerLimit) return refusal('LIMIT_EXCEEDED', facts);
  if (product.remaining < quantity) return refusal('SOLD_OUT', facts);
  const amountCents = product.priceCents * quantity;
  if (product.requiresFunds && spendableCents === undefined) return refusal('FUNDS_UNKNOWN', facts);
  if (product.requiresFunds && (spendableCents ?? 0) < amountCents) return refusal('INSUFFICIENT_FUNDS', { ...facts, amountCents, spendableCents });
  return null;
}

export const NOT_FOUND: ReserveRefusal = { ok: false, reason: 'PRODUCT_NOT_FOUND' };

/** The facts `refusal()` reports, from a product read. */
export function factsOf(product: ProductFacts): { remaining: number; opensAt: Date; limit: number | null } {
  return { remaining: product.remaining, opensAt: product.opensAt, limit: product.perBuyerLimit };
}

/**
 * Adds `quantity` to the buyer's units with a predicated upsert: it passes only if the buyer stays
 * within `limit`. Two racing purchases of one buyer queue on that buyer's row, so they cannot both
 * pass. Must run in the reserving transaction. No limit: nothing to count, always passes.
 */
export async function claimBuyerUnits(
  tx: Queryable,
  request: ReserveRequest,
  limit: number | null,
): Promise<boolean> {
  if (limit === null) return true;
  const rows = await tx`
    insert into buyer_units as b (product_id, buyer_id, units)
    values (${request.productId}, ${request.buyerId}, ${request.quantity})
    on conflict (product_id, buyer_id) do update
      set units = b.units + excluded.units
      where b.units + excluded.units <= ${limit}
    returning units`;
  return rows.length > 0;
}

/**
 * Inserts the hold, expiring `holdSeconds` after now by the database's clock. A repeated id raises
 * unique_violation (see `isDuplicateAllocation`), which rolls the whole reservation back.
 */
export async function insertAllocation(tx: Queryable, request: ReserveRequest, product: ProductFacts): Promise<Allocation> {
  const [row] = await tx<AllocationRow[]>`
    insert into allocations (id, product_id, buyer_id, quantity, amount_cents, status, expires_at)
    values (${request.allocationId}, ${request.productId}, ${request.buyerId}, ${request.quantity},
            ${product.priceCents * request.quantity}, 'held', now() + make_interval(secs => ${product.holdSeconds}))
    returning *`;
  if (!row) throw new Error('insert returned no allocation');
  return toAllocation(row);
}

/**
 * Thrown inside a transaction to roll it back and answer `outcome` instead (a claim that failed
 * after a write). Caught by `inTransaction`, never seen by callers.
 */
class Rollback extends Error {
  override readonly name = 'Rollback';
  constructor(readonly outcome: ReserveOutcome) {
    super(`rolled back: ${outcome.ok ? 'ok' : outcome.reason}`);
  }
}

/** Rolls the surrounding `inTransaction` back and makes it answer `outcome`. */
export function rollBackWith(outcome: ReserveOutcome): never {
  throw new Rollback(outcome);
}

/**
 * Runs `step` in one transaction (`transaction` in infra). A `rollBackWith(outcome)` inside undoes
 * every write and answers `outcome`; a repeated allocation id undoes every write and answers the
 * existing allocation.
 */
export async function inTransaction<T>(
  sql: Sql,
  step: (tx: Queryable) => Promise<T>,
  existing: () => Promise<ReserveOutcome>,
): Promise<T | ReserveOutcome> {
  try {
    return await transaction(sql, step);
  } catch (failure) {
    if (failure instanceof Rollback) return failure.outcome;
    if (isDuplicateAllocation(failure)) return existing();
    throw failure;
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
    const paid = await this.markPaid(allocationId);
    if (paid) return { ok: true, allocation: paid };
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

  /** Turns the allocation into a sale if it is held and unexpired by the database's clock; `null` otherwise. */
  protected async markPaid(allocationId: string): Promise<Allocation | null> {
    const [paid] = await this.sql<AllocationRow[]>`
      update allocations set status = 'paid', settled_at = now()
       where id = ${allocationId} and status = 'held' and expires_at > now()
      returning *`;
    return paid ? toAllocation(paid) : null;
  }

  /** The allocation made under `id`, if any (a retried reserve returns it). */
  allocation(id: string): Promise<Allocation | null> {
    return readAllocation(this.sql, id);
  }

  /** Outcome of a retried reserve whose allocation already exists. */
  protected async existingOutcome(id: string): Promise<ReserveOutcome> {
    const allocation = await this.allocation(id);
    if (!allocation) throw new Error(`allocation ${id} reported as duplicate but not found`);
    return { ok: true, allocation };
  }
}
