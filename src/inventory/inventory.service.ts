/**
 * The inventory module: products, their stock strategies, allocations (holds) and the audit's
 * view of stock. It is also the in-process `InventoryClient`.
 */
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import type { AuditSnapshot } from '../audit/audit.types.js';
import type { InventoryClient } from './inventory.client.js';
import type {
  Allocation,
  AllocationStatus,
  NewProduct,
  Product,
  ProductChange,
  ProductStats,
  ReserveOutcome,
  ReserveRefusal,
  ReserveRequest,
} from './inventory.types.js';
import type { ConfirmOutcome, ReleasedAllocation, StockStrategy } from './stock-strategy.js';
import type { StrategyRegistry } from './strategies/index.js';
import { readAllocation } from './strategies/postgres-stock.js';
import type { StrategyName } from './strategy-names.js';
import { ReserveLanes } from './reserve-lanes.js';
import { SoldOutHints } from './sold-out-hints.js';

interface ProductRow {
  id: string;
  name: string;
  price_cents: number;
  stock: number;
  remaining: number;
  per_buyer_limit: number | null;
  hold_seconds: number;
  opens_at: Date;
  closes_at: Date | null;
  ended_at: Date | null;
  strategy: StrategyName;
  created_at: Date;
}

export interface InventoryOptions {
  readonly sql: Sql;
  readonly strategies: StrategyRegistry;
  readonly defaultStrategy: StrategyName;
  readonly defaultHoldSeconds: number;
  /** How long a "sold out, 0 left" answer is reused without asking the store (0: never). */
  readonly soldOutHintMs?: number;
  /** Fewest reservations of one product with the store at once (`ReserveLanes`); 0: no limit. */
  readonly reserveLanes?: number;
  /** Mints product ids (time-ordered UUIDs). */
  readonly newId: () => string;
  readonly warn: (message: string) => void;
}

function toProduct(row: ProductRow): Product {
  return {
    id: row.id,
    name: row.name,
    priceCents: row.price_cents,
    stock: row.stock,
    remaining: row.remaining,
    perBuyerLimit: row.per_buyer_limit,
    holdSeconds: row.hold_seconds,
    opensAt: row.opens_at.toISOString(),
    closesAt: row.closes_at?.toISOString() ?? null,
    endedAt: row.ended_at?.toISOString() ?? null,
    strategy: row.strategy,
    createdAt: row.created_at.toISOString(),
  };
}

export class InventoryService implements InventoryClient {
  private readonly sql: Sql;
  /**
   * Product id → strategy. A product's strategy never changes, so this cache is always right;
   * it saves the purchase hot path a query. Misses are not cached (the product may be created
   * by another process a moment later).
   */
  private readonly strategyOf = new Map<string, StrategyName>();
  private readonly soldOut: SoldOutHints;
  private readonly lanes: ReserveLanes;

  constructor(private readonly options: InventoryOptions) {
    this.soldOut = new SoldOutHints(options.soldOutHintMs ?? 0);
    this.lanes = new ReserveLanes(options.reserveLanes ?? 0);
    this.sql = options.sql;
  }

  async createProduct(input: NewProduct): Promise<Product> {
    const strategy = input.strategy ?? this.options.defaultStrategy;
    this.strategyFor(strategy);
    const opensAt = input.opensAt ?? null;
    const closesAt = input.closesAt ?? null;
    if (opensAt !== null && closesAt !== null && Date.parse(closesAt) <= Date.parse(opensAt)) {
      throw new DomainError('VALIDATION_FAILED', 'closesAt must be after opensAt', {
        errors: [{ field: 'closesAt', message: 'must be after opensAt' }],
      });
    }
    const [row] = await this.sql<ProductRow[]>`
      insert into products (id, name, price_cents, stock, remaining, per_buyer_limit, hold_seconds,
                            opens_at, closes_at, strategy)
      values (${this.options.newId()}, ${input.name}, ${input.priceCents}, ${input.stock}, ${input.stock},
              ${input.perBuyerLimit ?? null}, ${input.holdSeconds ?? this.options.defaultHoldSeconds},
              coalesce(${opensAt}::timestamptz, now()), ${closesAt}::timestamptz, ${strategy})
      returning *`;
    if (!row) throw new Error('insert returned no product');
    if (strategy === 'naive') {
      this.options.warn(`product ${row.id} uses the naive strategy: it is unsafe on purpose and will oversell`);
    }
    this.strategyOf.set(row.id, strategy);
    this.lanes.noteRemaining(row.id, row.remaining);
    return toProduct(row);
  }

  async getProduct(id: string): Promise<Product> {
    const [row] = await this.sql<ProductRow[]>`select * from products where id = ${id}`;
    if (!row) throw new DomainError('PRODUCT_NOT_FOUND', undefined, { productId: id });
    return toProduct(row);
  }

  async listProducts(): Promise<Product[]> {
    const rows = await this.sql<ProductRow[]>`select * from products order by created_at desc, id limit 500`;
    return rows.map(toProduct);
  }

  async updateProduct(id: string, change: ProductChange): Promise<Product> {
    const addStock = change.addStock ?? 0;
    if (change.opensAt !== undefined || change.closesAt !== undefined) {
      const current = await this.getProduct(id);
      const opensAt = change.opensAt ?? current.opensAt;
      const closesAt = change.closesAt === undefined ? current.closesAt : change.closesAt;
      if (closesAt !== null && Date.parse(closesAt) <= Date.parse(opensAt)) {
        throw new DomainError('VALIDATION_FAILED', 'closesAt must be after opensAt', {
          errors: [{ field: 'closesAt', message: 'must be after opensAt' }],
        });
      }
    }
    const [row] = await this.sql<ProductRow[]>`
      update products set
        stock = stock + ${addStock},
        remaining = remaining + ${addStock},
        -- Every change bumps the version, as JPA's @Version does: an optimistic reservation that
        -- read the product before a new price, limit or window must not be written after it.
        version = version + 1,
        name = coalesce(${change.name ?? null}::text, name),
        price_cents = coalesce(${change.priceCents ?? null}::bigint, price_cents),
        per_buyer_limit = case when ${change.perBuyerLimit !== undefined} then ${change.perBuyerLimit ?? null}::int
                               else per_buyer_limit end,
        hold_seconds = coalesce(${change.holdSeconds ?? null}::int, hold_seconds),
        opens_at = coalesce(${change.opensAt ?? null}::timestamptz, opens_at),
        closes_at = case when ${change.closesAt !== undefined} then ${change.closesAt ?? null}::timestamptz
                         else closes_at end
      where id = ${id} and remaining + ${addStock} >= 0
      returning *`;
    if (row) {
      if (addStock > 0) this.soldOut.forget(id);
      this.lanes.noteRemaining(id, row.remaining);
      return toProduct(row);
    }
    const current = await this.getProduct(id);
    throw new DomainError(
      'INVALID_STOCK_CHANGE',
      `cannot remove ${-addStock} units: only ${current.remaining} are not held or paid`,
      { remaining: current.remaining, stock: current.stock },
    );
  }

  async endSale(id: string): Promise<Product> {
    const [row] = await this.sql<ProductRow[]>`
      update products set ended_at = coalesce(ended_at, now()), version = version + 1 where id = ${id} returning *`;
    if (!row) throw new DomainError('PRODUCT_NOT_FOUND', undefined, { productId: id });
    return toProduct(row);
  }

  async stats(id: string): Promise<ProductStats> {
    const product = await this.getProduct(id);
    const rows = await this.sql<{ status: string; units: number }[]>`
      select status, sum(quantity)::int8 as units from allocations where product_id = ${id} group by status`;
    const units = (status: string): number => rows.find((row) => row.status === status)?.units ?? 0;
    return {
      stocked: product.stock,
      held: units('held'),
      paid: units('paid'),
      remaining: product.remaining,
      expired: units('expired'),
      cancelled: units('cancelled'),
    };
  }

  refusalFromMemory(productId: string): ReserveRefusal | undefined {
    return this.soldOut.isSoldOut(productId) ? { ok: false, reason: 'SOLD_OUT', remaining: 0 } : undefined;
  }

  async reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    const strategy = await this.strategyOfProduct(request.productId);
    if (!strategy) return { ok: false, reason: 'PRODUCT_NOT_FOUND' };
    return this.lanes.run(request.productId, async () => {
      // Asked on entering the lane, not before: the last unit may go while this one waits in line.
      const learned = this.refusalFromMemory(request.productId);
      if (learned) return learned;
      const seen = this.soldOut.returnsSoFar(request.productId);
      const outcome = request.alongside ? await this.reserveAlongside(strategy, request, request.alongside) : await strategy.reserve(request);
      const remaining = outcome.ok || outcome.reason === 'SOLD_OUT' ? outcome.remaining : undefined;
      if (remaining !== undefined) {
        this.lanes.noteRemaining(request.productId, remaining);
        // The last unit just went (or had gone): the buyers in line need not ask the store.
        if (remaining === 0) this.soldOut.noteSoldOut(request.productId, seen);
      }
      return outcome;
    });
  }

  /**
   * Asks the store and runs `alongside` at once, so neither waits for the other's round trip.
   * When `alongside` says no (or fails), a unit the store reserved meanwhile goes straight back.
   */
  private async reserveAlongside(
    strategy: StockStrategy,
    request: ReserveRequest,
    alongside: () => Promise<boolean>,
  ): Promise<ReserveOutcome> {
    const [goOn, reserved] = await Promise.allSettled([alongside(), strategy.reserve(request)]);
    if (goOn.status === 'fulfilled' && goOn.value) {
      if (reserved.status === 'rejected') throw reserved.reason;
      return reserved.value;
    }
    if (reserved.status === 'fulfilled' && reserved.value.ok) {
      // If this fails too, the sweeper returns the unit when its hold expires.
      await strategy
        .release(request.allocationId, 'cancelled', false)
        .then((released) => this.unitsBack(released))
        .catch((error: unknown) => this.options.warn(`could not release withdrawn allocation ${request.allocationId}: ${String(error)}`));
    }
    if (goOn.status === 'rejected') throw goOn.reason;
    return { ok: false, reason: 'WITHDRAWN' };
  }

  async release(allocationId: string): Promise<ReleasedAllocation | null> {
    const strategy = await this.strategyOfAllocation(allocationId);
    return this.unitsBack(strategy ? await strategy.release(allocationId, 'cancelled', false) : null);
  }

  async expire(allocationId: string): Promise<ReleasedAllocation | null> {
    const strategy = await this.strategyOfAllocation(allocationId);
    return this.unitsBack(strategy ? await strategy.release(allocationId, 'expired', true) : null);
  }

  private unitsBack(released: ReleasedAllocation | null): ReleasedAllocation | null {
    if (released) {
      this.soldOut.forget(released.productId);
      this.lanes.noteReturned(released.productId, released.quantity);
    }
    return released;
  }

  async confirm(allocationId: string): Promise<ConfirmOutcome> {
    const strategy = await this.strategyOfAllocation(allocationId);
    return strategy ? strategy.confirm(allocationId) : { ok: false, reason: 'NOT_FOUND' };
  }

  allocation(allocationId: string): Promise<Allocation | null> {
    return readAllocation(this.sql, allocationId);
  }

  /**
   * Returns the units of every hold whose expiry has passed (by the database's clock) to stock.
   * Run every second and at start-up, so holds that expired while the server was down come back.
   * Returns how many holds it expired.
   */
  async sweepExpired(batchSize = 500): Promise<ReleasedAllocation[]> {
    const released: ReleasedAllocation[] = [];
    for (;;) {
      // The product comes with the id, so each hold costs one release, not a lookup as well.
      const due = await this.sql<{ id: string; product_id: string }[]>`
        select id, product_id from allocations where status = 'held' and expires_at <= now()
        order by expires_at limit ${batchSize}`;
      let changed = 0;
      for (const { id, product_id: productId } of due) {
        const strategy = await this.strategyOfProduct(productId);
        const done = this.unitsBack(strategy ? await strategy.release(id, 'expired', true) : null);
        if (done) {
          released.push(done);
          changed += 1;
        }
      }
      // A full batch of which nothing moved (another sweeper got there first): next time.
      if (due.length < batchSize || changed === 0) return released;
    }
  }


  async auditSnapshot(productId: string): Promise<AuditSnapshot> {
    const product = await this.getProduct(productId);
    const allocations = await this.sql<
      { id: string; buyer_id: string; quantity: number; status: AllocationStatus; inside_hold: boolean }[]
    >`select id, buyer_id, quantity, status, expires_at > now() as inside_hold
        from allocations where product_id = ${productId}`;
    return {
      productId,
      stocked: product.stock,
      remaining: product.remaining,
      perBuyerLimit: product.perBuyerLimit,
      allocations: allocations.map((row) => ({
        id: row.id,
        buyerId: row.buyer_id,
        quantity: row.quantity,
        status: row.status,
        insideHold: row.inside_hold,
      })),
    };
  }

  /** The strategy object for a name, or a `STRATEGY_UNAVAILABLE` error naming what is missing. */
  strategyFor(name: StrategyName): StockStrategy {
    const strategy = this.options.strategies.get(name);
    if ('unavailable' in strategy) {
      throw new DomainError('STRATEGY_UNAVAILABLE', strategy.unavailable, { strategy: name });
    }
    return strategy;
  }

  private async strategyOfProduct(productId: string): Promise<StockStrategy | null> {
    let name = this.strategyOf.get(productId);
    if (name === undefined) {
      const [row] = await this.sql<{ strategy: StrategyName }[]>`select strategy from products where id = ${productId}`;
      if (!row) return null;
      name = row.strategy;
      this.strategyOf.set(productId, name);
    }
    return this.strategyFor(name);
  }

  private async strategyOfAllocation(allocationId: string): Promise<StockStrategy | null> {
    const [row] = await this.sql<{ product_id: string }[]>`select product_id from allocations where id = ${allocationId}`;
    return row ? this.strategyOfProduct(row.product_id) : null;
  }
}
