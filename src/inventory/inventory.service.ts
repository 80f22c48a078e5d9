/**
 * The inventory module: the catalogue (`products.service.ts`) and the reservations against it
 * (`reservations.service.ts`), sharing the strategy of each product and what this process
 * remembers about stock. It is also the in-process `InventoryClient`.
 */
import type { AuditSnapshot } from '../audit/audit.types.js';
import type { Sql } from '../infra/database.js';
import type { InventoryClient } from './inventory.client.js';
import type { Allocation, NewProduct, Product, ProductChange, ProductStats, ReserveOutcome, ReserveRequest } from './inventory.types.js';
import { ProductStrategies } from './product-strategies.js';
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

export class InventoryService implements InventoryClient {
  private readonly products: Products;
  private readonly reservations: Reservations;

  constructor(options: InventoryOptions) {
    const strategies = new ProductStrategies(options.sql, options.strategies);
    const memory = new StockMemory(options.soldOutHintMs ?? 0, options.reserveLanes ?? 0);
    this.products = new Products({ ...options, strategies, memory });
    this.reservations = new Reservations(options.sql, strategies, memory);
  }

  createProduct(input: NewProduct): Promise<Product> {
    return this.products.createProduct(input);
  }

  getProduct(id: string): Promise<Product> {
    return this.products.getProduct(id);
  }

  listProducts(): Promise<Product[]> {
    return this.products.listProducts();
  }

  updateProduct(id: string, change: ProductChange): Promise<Product> {
    return this.products.updateProduct(id, change);
  }

  endSale(id: string): Promise<Product> {
    return this.products.endSale(id);
  }

  stats(id: string): Promise<ProductStats> {
    return this.products.stats(id);
  }

  auditSnapshot(productId: string): Promise<AuditSnapshot> {
    return this.products.auditSnapshot(productId);
  }

  reserve(request: ReserveRequest): Promise<ReserveOutcome> {
    return this.reservations.reserve(request);
  }

  release(allocationId: string): Promise<ReleasedAllocation | null> {
    return this.reservations.release(allocationId);
  }

  expire(allocationId: string): Promise<ReleasedAllocation | null> {
    return this.reservations.expire(allocationId);
  }

  confirm(allocationId: string): Promise<ConfirmOutcome> {
    return this.reservations.confirm(allocationId);
  }

  allocation(allocationId: string): Promise<Allocation | null> {
    return this.reservations.allocation(allocationId);
  }

  /** Returns expired holds' units to stock (see `Reservations.sweepExpired`). */
  sweepExpired(batchSize?: number): Promise<ReleasedAllocation[]> {
    return this.reservations.sweepExpired(batchSize);
  }
}
