/** Which strategy sells a product (or holds an allocation), cached: the purchase path asks on every reservation. */
import { canonicalId } from '../infra/canonical-id.js';
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import type { StockStrategy, TermsMirror } from './stock-strategy.js';
import type { StrategyRegistry } from './strategies/index.js';
import type { StrategyName } from './strategy-names.js';

export class ProductStrategies {
  /**
   * Product id → strategy. A product's strategy never changes, so this cache is always right;
   * it saves the purchase hot path a query. Misses are not cached (the product may be created
   * by another process a moment later).
   */
  private readonly strategyOf = new Map<string, StrategyName>();

  constructor(
    private readonly sql: Sql,
    private readonly registry: StrategyRegistry,
  ) {}

  /** The strategy object for a name, or a `STRATEGY_UNAVAILABLE` error naming what is missing. */
  named(name: StrategyName): StockStrategy {
    const strategy = this.registry.get(name);
    if ('unavailable' in strategy) throw new DomainError('STRATEGY_UNAVAILABLE', strategy.unavailable, { strategy: name });
    return strategy;
  }

  /** The strategies this process runs that decide outside PostgreSQL (those with their own copy of the terms). */
  outsideDatabase(): readonly { readonly name: StrategyName; readonly terms: TermsMirror }[] {
    return this.registry.available().flatMap((name) => {
      const strategy = this.registry.get(name);
      return 'terms' in strategy && strategy.terms !== undefined ? [{ name, terms: strategy.terms }] : [];
    });
  }

  /** A product was created (here) with this strategy. */
  remember(productId: string, name: StrategyName): void {
    this.strategyOf.set(canonicalId(productId, 'productId'), name);
  }

  /**
   * The product's strategy, or `null` when there is no such product. Keyed by the id's one
   * spelling: another spelling is refused, never cached as a second product.
   */
  async ofProduct(productId: string): Promise<StockStrategy | null> {
    let name = this.strategyOf.get(canonicalId(productId, 'productId'));
    if (name === undefined) {
      const [row] = await this.sql<{ strategy: StrategyName }[]>`select strategy from products where id = ${productId}`;
      if (!row) return null;
      name = row.strategy;
      this.strategyOf.set(productId, name);
    }
    return this.named(name);
  }

  /** The strategy holding the allocation and its product, or `null` when there is no such allocation. */
  async ofAllocation(allocationId: string): Promise<{ readonly strategy: StockStrategy; readonly productId: string } | null> {
    canonicalId(allocationId, 'orderId');
    const [row] = await this.sql<{ product_id: string }[]>`select product_id from allocations where id = ${allocationId}`;
    if (!row) return null;
    const strategy = await this.ofProduct(row.product_id);
    return strategy ? { strategy, productId: row.product_id } : null;
  }
}
