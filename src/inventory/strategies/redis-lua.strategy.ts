/**
 * `redis-lua`: the Redis gate decides every reservation in one Lua script (window by Redis `TIME`,
 * the buyer's limit, the stock, then the decrement and the hold), and the order pipeline carries
 * each grant to PostgreSQL. A grant comes back `pending`: the caller publishes it, and only the
 * broker's confirm makes it a `201` (DESIGN.md, "Durability contract").
 *
 * PostgreSQL stays the truth: the consumer writes each hold into `allocations` (taking it off
 * `remaining`), and every later step is decided by the gate and then mirrored there, never decided
 * twice by two clocks. When the product's keys are missing (Redis restarted or flushed, or it was
 * never loaded), the strategy answers `STORE_UNAVAILABLE` and rebuilds them from PostgreSQL once
 * nothing can still be on its way there (`GateRebuilds`).
 */
import type { Sql } from '../../infra/database.js';
import { DomainError } from '../../infra/errors.js';
import { outcomeUnknown, storeUnavailable } from '../../infra/store-errors.js';
import type { Product, ReserveOutcome, ReserveRequest } from '../inventory.types.js';
import type { GateRebuilds } from '../redis/rebuild.js';
import type { GateChange, RedisGate } from '../redis/gate.js';
import type { ConfirmOutcome, ReleasedAllocation, ReleaseStatus, SoldOutRefusal, StockStrategy, TermsMirror } from '../stock-strategy.js';

/** The store name buyers see in `STORE_UNAVAILABLE` / `OUTCOME_UNKNOWN`. */
const STORE = 'redis';
/** How long the gate answers "no such product" for an id PostgreSQL does not have. */
const ABSENT_MARK_MS = 5_000;

/** The product's terms as the gate keeps them, every value absolute. */
function termsOf(product: Product): Required<GateChange> & { readonly stocked: number } {
  return {
    stocked: product.stock,
    priceCents: product.priceCents,
    perBuyerLimit: product.perBuyerLimit,
    holdSeconds: product.holdSeconds,
    opensAt: product.opensAt,
    closesAt: product.closesAt,
    endedAt: product.endedAt,
    accountsCreatedBefore: product.accountsCreatedBefore,
    requiresFunds: product.requiresFunds,
  };
}

export class RedisLuaStrategy implements StockStrategy {
  readonly name = 'redis-lua';
  readonly safe = true;
  readonly terms: TermsMirror;
  /** The gate's reservation decisions since start, by code (`OK`, `AGAIN`, a refusal's reason), for `/metrics`. */
  readonly decisions = new Map<string, number>();
  /** Syncs of PostgreSQL's values whose stock change the gate refused since start, for `/metrics`. */
  syncsRefused = 0;

  constructor(
    private readonly gate: RedisGate,
    private readonly sql: Sql,
    private readonly rebuilds: GateRebuilds,
    private readonly warn: (message: string) => void = () => undefined,
  ) {
    this.terms = {
      created: (product, version) => this.loadNew(product, version),
      beforeRemoving: (productId, stocked, version) => this.beforeRemoving(productId, stocked, version),
      changed: (product, version, resync) => this.changed(product, version, resync === true),
      remaining: (productId) => this.remaining(productId),
      stats: async (productId) => {
        if (!this.gate.ready) return null;
        const count = await this.gate.count(productId).catch(() => null);
        if (count === null) return null;
        const { stocked, held, paid, remaining, expired, cancelled } = count;
        return { stocked, held, paid, remaining, expired, cancelled };
      },
      uncounted: async (productId, allocationIds) => {
        if (!this.gate.ready) return null;
        return this.gate.holdsNotCounted(productId, allocationIds).catch(() => null);
      },
      hold: (productId, allocationId) => this.onGate(() => this.gate.hold(productId, allocationId), undefined),
    };
  }

  async reserve(request: ReserveRequest, soldOut?: SoldOutRefusal): Promise<ReserveOutcome> {
    const outcome = await this.onGate(() => this.gate.reserve(request, soldOut), request.allocationId);
    const code = outcome.ok ? (outcome.again === true ? 'AGAIN' : 'OK') : outcome.reason;
    this.decisions.set(code, (this.decisions.get(code) ?? 0) + 1);
    if (!outcome.ok && outcome.reason === 'NOT_LOADED') {
      // No keys: a product PostgreSQL does not have is marked absent for a while (a storm for an
      // unknown id is then refused by the gate); one it has is rebuilt, and 503 meanwhile.
      const [row] = await this.sql`select 1 from products where id = ${request.productId}`;
      if (!row) {
        await this.gate.markAbsent(request.productId, ABSENT_MARK_MS).catch(() => false);
        return { ok: false, reason: 'PRODUCT_NOT_FOUND' };
      }
      throw this.notLoaded(request.productId);
    }
    return outcome.ok ? { ...outcome, pending: true } : outcome;
  }

  /**
   * The gate decides (with only-if-expired, by Redis `TIME`); PostgreSQL's allocation follows
   * whatever the gate's hold now is, so a mirror step lost to a crash is made by the next call.
   */
  async release(allocationId: string, status: ReleaseStatus, onlyIfExpired: boolean, productId: string): Promise<ReleasedAllocation | null> {
    const outcome = await this.onGate(() => this.gate.release(productId, allocationId, status, onlyIfExpired), allocationId);
    if (outcome.ok) {
      await this.mirror(allocationId, status);
      return outcome.released;
    }
    switch (outcome.reason) {
      case 'NOT_LOADED':
        throw this.notLoaded(productId);
      case 'NOT_HELD':
        await this.mirror(allocationId, outcome.status);
        return null;
      case 'NOT_FOUND':
        // No hold under the id: it ended (its units back in the gate then) and left `holds` once
        // past the reconciler's horizon, before PostgreSQL followed it (its store was down that
        // long). PostgreSQL follows now; an id PostgreSQL does not hold is left as it is.
        await this.mirror(allocationId, status, onlyIfExpired);
        return null;
      case 'NOT_EXPIRED':
        return null;
    }
  }

  async confirm(allocationId: string, productId: string): Promise<ConfirmOutcome> {
    const outcome = await this.onGate(() => this.gate.confirm(productId, allocationId), allocationId);
    if (outcome.ok) {
      await this.mirror(allocationId, 'paid');
      return outcome;
    }
    if (outcome.reason === 'NOT_LOADED') throw this.notLoaded(productId);
    return outcome;
  }

  /**
   * Brings the allocation's row to the gate's status; a row no longer held is left as it is.
   * `onlyIfExpired`: only once its expiry has passed by PostgreSQL's clock (the gate's hold is gone,
   * so the gate cannot say).
   */
  private async mirror(allocationId: string, status: 'paid' | 'cancelled' | 'expired', onlyIfExpired = false): Promise<void> {
    if (status === 'paid') {
      await this.sql`update allocations set status = 'paid', settled_at = now() where id = ${allocationId} and status = 'held'`;
      return;
    }
    // The units go back to `remaining` with the status, as for every strategy (not on the clock
    // when the gate has decided).
    await this.sql`select 1 from release_allocation(${allocationId}, ${status}, ${onlyIfExpired})`;
  }

  private notLoaded(productId: string): DomainError {
    this.rebuilds.start(productId);
    return storeUnavailable(STORE);
  }

  /**
   * Runs a gate call. A connection that is down now means nothing was sent (`STORE_UNAVAILABLE`);
   * a failure with the call sent may have changed the hold (`OUTCOME_UNKNOWN`, naming the order).
   */
  private async onGate<T>(call: () => Promise<T>, orderId: string | undefined): Promise<T> {
    if (!this.gate.ready) throw storeUnavailable(STORE);
    try {
      return await call();
    } catch (error) {
      if (error instanceof DomainError) throw error;
      throw orderId === undefined ? storeUnavailable(STORE) : outcomeUnknown(STORE, orderId);
    }
  }

  private async loadNew(product: Product, version: number): Promise<void> {
    const loaded = await this.onGate(() => this.gate.load(product.id, { ...termsOf(product), remaining: product.remaining }, version), undefined);
    // Keys left from an earlier life of this id: cleared and loaded again from PostgreSQL.
    if (loaded === 'partial') this.rebuilds.start(product.id);
  }

  private async beforeRemoving(productId: string, stocked: number, version: number): Promise<{ remaining: number } | null> {
    const outcome = await this.onGate(() => this.gate.update(productId, { stocked }, version, 'check'), undefined);
    if (outcome.ok) return null;
    if (outcome.reason === 'INVALID_STOCK_CHANGE') return { remaining: outcome.remaining };
    // Not loaded: the rebuild reads the change from PostgreSQL (it waits for the row's lock).
    this.rebuilds.start(productId);
    return null;
  }

  private async changed(product: Product, version: number, resync: boolean): Promise<void> {
    const outcome = await this.onGate(() => this.gate.update(product.id, termsOf(product), version, resync ? 'force' : 'apply'), undefined);
    if (outcome.ok) return;
    if (outcome.reason === 'NOT_LOADED') {
      this.rebuilds.start(product.id);
      return;
    }
    // The gate has fewer units free than PostgreSQL's stock change takes away: the terms were
    // applied, the stock was not; the next resync tries again, and the audit shows the mismatch.
    this.syncsRefused += 1;
    this.warn(
      `redis-lua: the gate refused PostgreSQL's stock of product ${product.id} (${product.stock} stocked; the gate has ${outcome.remaining} free); its terms were applied, the stock will be tried again`,
    );
  }

  private async remaining(productId: string): Promise<number | null> {
    if (!this.gate.ready) return null;
    return this.gate.remaining(productId).catch(() => null);
  }
}
