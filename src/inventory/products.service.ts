/**
 * The catalogue: products, their stock counts and sale windows, the admin's changes (recorded in
 * the strategy's stock log too, when it keeps one), a product's stock events, and the audit's view
 * of a product's stock (read from the allocations, the truth, not from counters).
 */
import type { AuditAllocationState, AuditAllocationsPage, AuditFigures, AuditPage } from '../audit/audit.types.js';
import { transaction, type Sql, type Tx } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import type {
  NewProduct,
  Product,
  ProductChange,
  ProductStats,
  StockEvent,
  StockEventKind,
  StockEventsPage,
} from './inventory.types.js';
import type { ProductStrategies } from './product-strategies.js';
import type { StockLog, TermsMirror } from './stock-strategy.js';
import type { StockMemory } from './stock-memory.js';
import type { StrategyName } from './strategy-names.js';

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
  accounts_before: Date | null;
  requires_funds: boolean;
  created_at: Date;
  /** Bumped by every change to the row: the order a strategy's copy applies changes in. */
  version: number;
}

export interface ProductsOptions {
  readonly sql: Sql;
  readonly strategies: ProductStrategies;
  readonly memory: StockMemory;
  readonly defaultStrategy: StrategyName;
  readonly defaultHoldSeconds: number;
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
    accountsCreatedBefore: row.accounts_before?.toISOString() ?? null,
    requiresFunds: row.requires_funds,
    createdAt: row.created_at.toISOString(),
  };
}

/** Rolls back `logStock`'s transaction when the row's write was refused; never leaves this file. */
class NothingWritten extends Error {
  override readonly name = 'NothingWritten';
}

/** Buyers over the limit an audit names at most (each is a violation: a few already say what went wrong). */
const OVER_LIMIT_NAMED = 1_000;

export class Products {
  private readonly sql: Sql;
  private readonly strategies: ProductStrategies;
  private readonly memory: StockMemory;

  constructor(private readonly options: ProductsOptions) {
    this.sql = options.sql;
    this.strategies = options.strategies;
    this.memory = options.memory;
  }

  async createProduct(input: NewProduct): Promise<Product> {
    const strategy = input.strategy ?? this.options.defaultStrategy;
    this.strategies.named(strategy);
    const opensAt = input.opensAt ?? null;
    const closesAt = input.closesAt ?? null;
    if (opensAt !== null && closesAt !== null && Date.parse(closesAt) <= Date.parse(opensAt)) {
      throw new DomainError('VALIDATION_FAILED', 'closesAt must be after opensAt', {
        errors: [{ field: 'closesAt', message: 'must be after opensAt' }],
      });
    }
    const id = this.options.newId();
    const [row] = await this.logStock(this.strategies.named(strategy).log, id, input.stock, (db) => db<ProductRow[]>`
      insert into products (id, name, price_cents, stock, remaining, per_buyer_limit, hold_seconds,
                            opens_at, closes_at, strategy, accounts_before, requires_funds)
      values (${id}, ${input.name}, ${input.priceCents}, ${input.stock}, ${input.stock},
              ${input.perBuyerLimit ?? null}, ${input.holdSeconds ?? this.options.defaultHoldSeconds},
              coalesce(${opensAt}::timestamptz, now()), ${closesAt}::timestamptz, ${strategy},
              ${input.accountsCreatedBefore ?? null}::timestamptz, ${input.requiresFunds ?? false})
      returning *`);
    if (!row) throw new Error('insert returned no product');
    if (strategy === 'naive') {
      this.options.warn(`product ${row.id} uses the naive strategy: it is unsafe on purpose and will oversell`);
    }
    this.strategies.remember(row.id, strategy);
    this.memory.stockChanged(row.id, row.remaining, false);
    const product = toProduct(row);
    const { terms } = this.strategies.named(strategy);
    // Loaded into the strategy's own copy now; if that fails, the copy is built from this row on
    // first use (the product exists: PostgreSQL is the truth).
    await terms?.created(product, row.version).catch((error: unknown) => {
      this.options.warn(`product ${row.id}: could not load it into the ${strategy} store now (${(error as Error).message}); it is loaded on first use`);
    });
    return product;
  }

  async getProduct(id: string): Promise<Product> {
    const [row] = await this.sql<ProductRow[]>`select * from products where id = ${id}`;
    if (!row) throw new DomainError('PRODUCT_NOT_FOUND', undefined, { productId: id });
    return this.withLiveRemaining(toProduct(row));
  }

  /**
   * A strategy that decides outside PostgreSQL (redis-lua) is ahead of `remaining` in the row by
   * the grants still in the pipeline: the buyer sees its count when it can give one.
   */
  private async withLiveRemaining(product: Product): Promise<Product> {
    const { terms } = this.strategies.named(product.strategy);
    const live = terms === undefined ? null : await terms.remaining(product.id);
    return live === null ? product : { ...product, remaining: live };
  }

  async listProducts(): Promise<Product[]> {
    const rows = await this.sql<ProductRow[]>`select * from products order by created_at desc, id limit 500`;
    return rows.map(toProduct);
  }

  /**
   * Runs `write` (the product row's insert or update); with the product strategy's `StockLog`,
   * records the change of stock in it first, in the same transaction (the log's lock order: its
   * next number, then the product row). A `write` that returns no row (refused by its predicate)
   * rolls the record back too.
   */
  private async logStock(
    log: StockLog | undefined,
    id: string,
    units: number,
    write: (db: Sql | Tx) => Promise<ProductRow[]>,
  ): Promise<ProductRow[]> {
    if (log === undefined) return write(this.sql);
    try {
      return await transaction(this.sql, async (tx) => {
        await log.stocked(tx, id, units);
        const rows = await write(tx);
        if (rows.length === 0) throw new NothingWritten();
        return rows;
      });
    } catch (error) {
      if (error instanceof NothingWritten) return [];
      throw error;
    }
  }

  async updateProduct(id: string, change: ProductChange): Promise<Product> {
    const addStock = change.addStock ?? 0;
    const strategy = await this.strategies.ofProduct(id);
    const { terms } = strategy ?? {};
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
    const update = (db: Sql | Tx): Promise<ProductRow[]> => db<ProductRow[]>`
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
        -- The hold being replaced may be the longest the product had: grants made under it may
        -- still be on their way through the order pipeline (see migration 009).
        longest_hold_seconds = greatest(longest_hold_seconds, hold_seconds),
        opens_at = coalesce(${change.opensAt ?? null}::timestamptz, opens_at),
        closes_at = case when ${change.closesAt !== undefined} then ${change.closesAt ?? null}::timestamptz
                         else closes_at end,
        accounts_before = case when ${change.accountsCreatedBefore !== undefined} then ${change.accountsCreatedBefore ?? null}::timestamptz
                               else accounts_before end,
        requires_funds = coalesce(${change.requiresFunds ?? null}::boolean, requires_funds)
      where id = ${id} and remaining + ${addStock} >= 0
      returning *`;
    const [row] =
      terms === undefined
        ? await this.logStock(addStock === 0 ? undefined : strategy?.log, id, addStock, update)
        : await this.changeMirrored(id, addStock, terms, update);
    if (row) {
      this.memory.stockChanged(id, row.remaining, addStock > 0);
      if (addStock > 0) this.strategies.named(row.strategy).unitsBack?.(id);
      const product = toProduct(row);
      // Applied before the admin hears "done", with the row's version: the copy ends at the
      // newest change whatever order concurrent changes reach it in.
      await terms?.changed(product, row.version);
      return terms === undefined ? product : this.withLiveRemaining(product);
    }
    const current = await this.getProduct(id);
    throw new DomainError(
      'INVALID_STOCK_CHANGE',
      `cannot remove ${-addStock} units: only ${current.remaining} are not held or paid`,
      { remaining: current.remaining, stock: current.stock },
    );
  }

  /**
   * A change of a product whose strategy keeps its own copy of the terms (redis-lua), made under
   * the row's lock, so changes are numbered (the version) one at a time and a rebuild or resync of
   * the copy, which takes the row's key-share lock, never reads between a change and its sync.
   * Units taken away leave the copy first, where they are sold: if the database's change then
   * fails, the copy has fewer units than the truth (undersold until the resync), never more.
   * Units added reach the copy after the commit (`changed`), for the same reason.
   */
  private async changeMirrored(
    id: string,
    addStock: number,
    terms: TermsMirror,
    update: (db: Tx) => Promise<ProductRow[]>,
  ): Promise<ProductRow[]> {
    return transaction(this.sql, async (tx) => {
      const [current] = await tx<{ stock: number; version: number }[]>`select stock, version from products where id = ${id} for update`;
      if (!current) throw new DomainError('PRODUCT_NOT_FOUND', undefined, { productId: id });
      if (addStock < 0) {
        const refused = await terms.beforeRemoving(id, current.stock + addStock, current.version + 1);
        if (refused) {
          throw new DomainError('INVALID_STOCK_CHANGE', `cannot remove ${-addStock} units: only ${refused.remaining} are not held or paid`, {
            remaining: refused.remaining,
            stock: current.stock,
          });
        }
      }
      return update(tx);
    });
  }

  async endSale(id: string): Promise<Product> {
    // Under the row's lock, as every change of terms (see changeMirrored).
    const row = await transaction(this.sql, async (tx) => {
      await tx`select 1 from products where id = ${id} for update`;
      const [updated] = await tx<ProductRow[]>`
        update products set ended_at = coalesce(ended_at, now()), version = version + 1 where id = ${id} returning *`;
      return updated;
    });
    if (!row) throw new DomainError('PRODUCT_NOT_FOUND', undefined, { productId: id });
    const product = toProduct(row);
    const { terms } = this.strategies.named(product.strategy);
    await terms?.changed(product, row.version);
    return product;
  }

  /**
   * Applies the row's terms and stock to the strategy's own copy again (nothing if it has none),
   * whatever version the copy has applied: under the row's key-share lock no change is under way
   * (each holds the row's lock until it has taken units from the copy); a change committed before
   * this read whose sync is still coming carries this version or an older one, which the copy
   * then applies as the same values or ignores.
   */
  async resyncTerms(id: string): Promise<void> {
    await transaction(this.sql, async (tx) => {
      const [row] = await tx<ProductRow[]>`select * from products where id = ${id} for key share`;
      if (!row) return;
      const product = toProduct(row);
      await this.strategies.named(product.strategy).terms?.changed(product, row.version, true);
    });
  }

  async stats(id: string): Promise<ProductStats> {
    const product = await this.getProduct(id);
    const live = await this.strategies.named(product.strategy).terms?.stats(id);
    if (live) return live;
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

  /**
   * A page of the product's stock events after `after`, oldest first (a product whose strategy
   * keeps no stock stream has none).
   */
  async events(productId: string, page: { after: number; limit: number }): Promise<StockEventsPage> {
    const [product] = await this.sql`select 1 from products where id = ${productId}`;
    if (!product) throw new DomainError('PRODUCT_NOT_FOUND', undefined, { productId });
    const rows = await this.sql<
      { seq: number; kind: StockEventKind; units: number; allocation_id: string | null; buyer_id: string | null; at: Date }[]
    >`
      select seq, kind, units, allocation_id, buyer_id, at from stock_events
       where product_id = ${productId} and seq > ${page.after}
       order by seq limit ${page.limit + 1}`;
    const events = rows.slice(0, page.limit).map(
      (row): StockEvent => ({
        seq: row.seq,
        kind: row.kind,
        units: row.units,
        allocationId: row.allocation_id,
        buyerId: row.buyer_id,
        at: row.at.toISOString(),
      }),
    );
    const last = events.at(-1);
    return { events, nextAfter: rows.length > page.limit && last !== undefined ? last.seq : null };
  }

  /**
   * The product's figures in one statement, so at one instant: read in two, a sale between them
   * showed a stock mismatch that was never there. PostgreSQL counts the units and the buyers over
   * the limit, so the answer is the same size however many allocations the product has.
   */
  async auditFigures(productId: string): Promise<AuditFigures> {
    const [row] = await this.sql<
      {
        stock: number;
        remaining: number;
        per_buyer_limit: number | null;
        taken_at: Date;
        held: number;
        paid: number;
        expired: number;
        cancelled: number;
        over_limit: { buyer_id: string; units: number }[];
      }[]
    >`
      select p.stock, p.remaining, p.per_buyer_limit, now() as taken_at, units.held, units.paid, units.expired, units.cancelled,
             coalesce((select jsonb_agg(jsonb_build_object('buyer_id', over.buyer_id, 'units', over.units) order by over.buyer_id)
                         from (select a.buyer_id, sum(a.quantity)::int8 as units from allocations a
                                where a.product_id = p.id and a.status in ('held', 'paid')
                                group by a.buyer_id having sum(a.quantity) > p.per_buyer_limit
                                order by a.buyer_id limit ${OVER_LIMIT_NAMED}) as over), '[]'::jsonb) as over_limit
        from products p,
             lateral (select coalesce(sum(a.quantity) filter (where a.status = 'held'), 0)::int8 as held,
                             coalesce(sum(a.quantity) filter (where a.status = 'paid'), 0)::int8 as paid,
                             coalesce(sum(a.quantity) filter (where a.status = 'expired'), 0)::int8 as expired,
                             coalesce(sum(a.quantity) filter (where a.status = 'cancelled'), 0)::int8 as cancelled
                        from allocations a where a.product_id = p.id) as units
       where p.id = ${productId}`;
    if (!row) throw new DomainError('PRODUCT_NOT_FOUND', undefined, { productId });
    const strategy = await this.strategies.ofProduct(productId);
    const gate = strategy?.terms === undefined ? null : await strategy.terms.stats(productId);
    return {
      ...(gate === null ? {} : { gate: { remaining: gate.remaining, stocked: gate.stocked, held: gate.held, paid: gate.paid } }),
      productId,
      takenAt: row.taken_at.toISOString(),
      stocked: row.stock,
      remaining: row.remaining,
      perBuyerLimit: row.per_buyer_limit,
      units: { held: Number(row.held), paid: Number(row.paid), expired: Number(row.expired), cancelled: Number(row.cancelled) },
      buyersOverLimit: row.over_limit.map((over) => ({ buyerId: over.buyer_id, units: Number(over.units) })),
    };
  }

  /** A page of the product's held and paid allocations after `page.after`, by id, with those the gate does not count. */
  async auditAllocations(productId: string, page: AuditPage): Promise<AuditAllocationsPage> {
    const rows = await this.sql<{ id: string; quantity: number; status: 'held' | 'paid'; inside_hold: boolean }[]>`
      select id, quantity, status, expires_at > now() as inside_hold from allocations
       where product_id = ${productId} and status in ('held', 'paid') and (${page.after}::uuid is null or id > ${page.after}::uuid)
       order by id limit ${page.limit + 1}`;
    const shown = rows.slice(0, page.limit);
    const strategy = await this.strategies.ofProduct(productId);
    const ids = shown.map((row) => row.id);
    const uncounted = strategy?.terms === undefined || ids.length === 0 ? null : await strategy.terms.uncounted(productId, ids);
    return {
      allocations: shown.map((row) => ({ id: row.id, quantity: row.quantity, status: row.status, insideHold: row.inside_hold })),
      uncounted: uncounted ?? [],
      nextAfter: rows.length > page.limit ? shown.at(-1)?.id ?? null : null,
    };
  }

  async auditAllocationStates(productId: string, ids: readonly string[]): Promise<AuditAllocationState[]> {
    if (ids.length === 0) return [];
    const rows = await this.sql<{ id: string; status: AuditAllocationState['status'] }[]>`
      select id, status from allocations where id = any(${this.sql.array([...ids])}::uuid[]) and product_id = ${productId}`;
    return rows.map((row) => ({ id: row.id, status: row.status }));
  }
}
