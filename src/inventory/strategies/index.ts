/**
 * Builds the stock strategies this process can run, from the stores it has. A strategy whose
 * store is not configured is listed with what it misses, so asking for it is a clear 400.
 */
import type { Sql } from '../../infra/database.js';
import type { StrategyName } from '../strategy-names.js';
import type { StockStrategy } from '../stock-strategy.js';
import { AtomicStrategy } from './atomic.strategy.js';

export interface StrategyStores {
  readonly inventorySql: Sql;
}

export interface StrategyRegistry {
  /** The strategy, or why this process cannot run it. */
  get(name: StrategyName): StockStrategy | { readonly unavailable: string };
  /** Names this process can run now. */
  available(): StrategyName[];
}

export function buildStrategies(stores: StrategyStores): StrategyRegistry {
  const built = new Map<StrategyName, StockStrategy>([['atomic', new AtomicStrategy(stores.inventorySql)]]);
  const missing = (name: StrategyName): string => `strategy "${name}" is not implemented yet`;
  return {
    get: (name) => built.get(name) ?? { unavailable: missing(name) },
    available: () => [...built.keys()],
  };
}
