/**
 * Sold-out hints: once the store has answered "sold out, 0 left" for a product, this process
 * refuses further reservations of it without a round trip for a short while. At the moment of a
 * drop, almost every buyer arrives after the last unit went; answering them from memory keeps
 * the store free for the winners and the refusals fast.
 *
 * @remarks A hint never guards stock: it can only refuse early, never sell, so it cannot
 * oversell. It is dropped the moment this process returns units (cancel, expiry, added stock);
 * units returned by another process are seen within the hint's lifetime (`SOLD_OUT_HINT_MS`).
 * Set it to 0 to send every reservation to the strategy (to study a strategy's raw behaviour).
 * Keyed by the product id's one spelling (`infra/canonical-id.ts`): a hint noted under one spelling
 * must be the hint every buyer of the product meets.
 */
import { canonicalId } from '../infra/canonical-id.js';

export class SoldOutHints {
  private readonly until = new Map<string, number>();
  /** Bumped each time units of the product come back, so a "sold out" read before can be ignored. */
  private readonly returns = new Map<string, number>();

  constructor(
    private readonly lifetimeMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** True while a recent answer from the store said the product had nothing left. */
  isSoldOut(productId: string): boolean {
    const until = this.until.get(canonicalId(productId, 'productId'));
    if (until === undefined) return false;
    if (this.now() < until) return true;
    this.until.delete(productId);
    return false;
  }

  /** Take before asking the store; give to `noteSoldOut` with its answer. */
  returnsSoFar(productId: string): number {
    return this.returns.get(productId) ?? 0;
  }

  /**
   * The store said "sold out, 0 left" to a question asked when `returnsSoFar` was `seen`. Ignored
   * when units came back since: that answer is older than the units.
   */
  noteSoldOut(productId: string, seen: number): void {
    canonicalId(productId, 'productId');
    if (this.lifetimeMs > 0 && this.returnsSoFar(productId) === seen) this.until.set(productId, this.now() + this.lifetimeMs);
  }

  /** Units of the product came back: the next buyer must ask the store. */
  forget(productId: string): void {
    canonicalId(productId, 'productId');
    this.until.delete(productId);
    this.returns.set(productId, this.returnsSoFar(productId) + 1);
  }
}
