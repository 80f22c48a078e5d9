/**
 * The inventory module: the catalogue (`products.service.ts`) and the reservations against it
 * (`reservations.service.ts`), sharing the strategy of each product and what this process
 * remembers about stock. It is also the in-process `InventoryClient`.
 */
import type { AuditAllocationState, AuditAllocationsPage, AuditFigures, AuditPage } from '../audit/audit.types.js';
import { canonicalId } from '../infra/canonical-id.js';
import { onStore } from '../infra/store-errors.js';
import type { Sql } from '../infra/database.js';
import type { InventoryClient } from './inventory.client.js';
import type {
  Allocation,
  NewProduct,
  OutsideHold,
  Product,
  ProductChange,
  ProductStats,
  ReserveOutcome,
  ReserveRequest,
  StockEventsPage,
} from './inventory.types.js';
import { OutsideHolds } from './outside-holds.js';
import { ProductStrategies } from './product-strategies.js';
import { PendingHolds, type PendingHold, type RecordedHold } from './pending-holds.js';
import { Products } from './products.service.js';
import { Reservations } from './reservations.service.js';
import type { ConfirmOutcome, ReleasedAllocation } from './stock-strategy.js';
import type { StrategyRegistry } from './strategies/index.js';
import { StockMemory } from './stock-memory.js';
import type { StrategyName } from './strategy-names.js';

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

/** The name a failure of this module's store goes by (`STORE_UNAVAILABLE`'s `store`). */
const STORE = 'inventory';

/**
 * Every call reaches the store through `onStore`, so a database that is down or restarting
 * crosses the client as `STORE_UNAVAILABLE` or `OUTCOME_UNKNOWN` (naming the allocation), never as
 * a driver error.
 */
export class InventoryService implements InventoryClient {
  private readonly products: Products;
  private readonly reservations: Reservations;
  private readonly pending: PendingHolds;
  private readonly outside: OutsideHolds;

  constructor(options: InventoryOptions) {
    const strategies = new ProductStrategies(options.sql, options.strategies);
    const memory = new StockMemory(options.soldOutHintMs ?? 0, options.reserveLanes ?? 0);
    this.products = new Products({ ...options, strategies, memory });
    this.reservations = new Reservations(options.sql, strategies, memory);
    this.pending = new PendingHolds(options.sql);
    this.outside = new OutsideHolds(options.sql, strategies);
  }

  recordHolds(holds: readonly PendingHold[]): Promise<RecordedHold[]> {
    return onStore(STORE, () => this.pending.record(holds));
  }

  withdraw(hold: { readonly id: string; readonly productId: string }): Promise<ReleasedAllocation | null> {
    return onStore(STORE, () => this.reservations.withdraw(hold.id, hold.productId), hold.id);
  }

  abandonHolds(holds: readonly PendingHold[]): Promise<void> {
    return onStore(STORE, async () => {
      await this.pending.void(holds);
      for (const hold of holds) await this.reservations.withdrawPending(hold.id, hold.productId);
    });
  }

  /** Voids holds that never reached the database (the reconciler; see `PendingHolds.void`). */
  voidHolds(holds: readonly PendingHold[]): Promise<string[]> {
    return onStore(STORE, () => this.pending.void(holds));
  }

  /** Applies the product's terms from PostgreSQL to its strategy's own copy again (the reconciler). */
  resyncTerms(productId: string): Promise<void> {
    return onStore(STORE, () => this.products.resyncTerms(productId));
  }

  createProduct(input: NewProduct): Promise<Product> {
    return onStore(STORE, () => this.products.createProduct(input));
  }

  getProduct(id: string): Promise<Product> {
    return onStore(STORE, () => this.products.getProduct(id), undefined, false);
  }

  listProducts(): Promise<Product[]> {
    return onStore(STORE, () => this.products.listProducts(), undefined, false);
  }

  updateProduct(id: string, change: ProductChange): Promise<Product> {
    return onStore(STORE, () => this.products.updateProduct(id, change));
  }

  endSale(id: string): Promise<Product> {
    return onStore(STORE, () => this.products.endSale(id));
  }

  stats(id: string): Promise<ProductStats> {
    return onStore(STORE, () => this.products.stats(id), undefined, false);
  }

  events(productId: string, page: { readonly after: number; readonly limit: number }): Promise<StockEventsPage> {
    return onStore(STORE, () => this.products.events(productId, page), undefined, false);
  }

  auditFigures(productId: string): Promise<AuditFigures> {
    return onStore(STORE, () => this.products.auditFigures(productId), undefined, false);
  }

  auditAllocations(productId: string, page: AuditPage): Promise<AuditAllocationsPage> {
    return onStore(STORE, () => this.products.auditAllocations(productId, page), undefined, false);
  }

  auditAllocationStates(productId: string, ids: readonly string[]): Promise<AuditAllocationState[]> {
    return onStore(STORE, () => this.products.auditAllocationStates(productId, ids), undefined, false);
  }

  reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    return onStore(STORE, () => this.reservations.reserve(request), request.allocationId);
  }

  release(allocationId: string): Promise<ReleasedAllocation | null> {
    return onStore(STORE, () => this.reservations.release(allocationId), allocationId);
  }

  expire(allocationId: string): Promise<ReleasedAllocation | null> {
    return onStore(STORE, () => this.reservations.expire(allocationId), allocationId);
  }

  confirm(allocationId: string): Promise<ConfirmOutcome> {
    return onStore(STORE, () => this.reservations.confirm(allocationId), allocationId);
  }

  allocation(allocationId: string): Promise<Allocation | null> {
    return onStore(STORE, () => this.reservations.allocation(allocationId), undefined, false);
  }

  outsideHold(buyerId: string, allocationId: string): Promise<OutsideHold> {
    return onStore(STORE, () => this.outside.of(canonicalId(buyerId, 'buyerId'), canonicalId(allocationId, 'orderId')), undefined, false);
  }

  /** Returns expired holds' units to stock (see `Reservations.sweepExpired`). */
  sweepExpired(batchSize?: number): Promise<ReleasedAllocation[]> {
    return onStore(STORE, () => this.reservations.sweepExpired(batchSize));
  }
}
