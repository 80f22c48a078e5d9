/**
 * What this process remembers about stock to answer faster: the sold-out hints (refuse from
 * memory for a moment after the store said "0 left") and the reserve lanes (how many
 * reservations of one product go to the store at once). It never guards stock: a hint can only
 * refuse early and a lane only orders work; the strategy's atomic step still decides every sale.
 * It stays inside inventory: no client ever sees it.
 */
import type { ReserveOutcome } from './inventory.types.js';
import { ReserveLanes } from './reserve-lanes.js';
import { SoldOutHints } from './sold-out-hints.js';
import type { ReleasedAllocation, SoldOutRefusal } from './stock-strategy.js';

const SOLD_OUT: SoldOutRefusal = Object.freeze({ ok: false, reason: 'SOLD_OUT', remaining: 0 });

/**
 * Units left as the store's answer says they are now; `undefined` when it does not say (a refusal
 * of another kind, or a kept refusal replayed, whose figure is of its own moment).
 */
function remainingNow(outcome: ReserveOutcome): number | undefined {
  if (outcome.ok) return outcome.remaining;
  return outcome.reason === 'SOLD_OUT' && outcome.again !== true ? outcome.remaining : undefined;
}

export class StockMemory {
  private readonly soldOut: SoldOutHints;
  private readonly lanes: ReserveLanes;

  /** `soldOutHintMs` 0: no hints; `reserveLanes` 0: no lanes (see the config's `SOLD_OUT_HINT_MS`, `RESERVE_LANES`). */
  constructor(soldOutHintMs: number, reserveLanes: number) {
    this.soldOut = new SoldOutHints(soldOutHintMs);
    this.lanes = new ReserveLanes(reserveLanes);
  }

  /** The refusal memory alone can give (sold out a moment ago), or `undefined`: ask the store. */
  refusal(productId: string): SoldOutRefusal | undefined {
    return this.soldOut.isSoldOut(productId) ? SOLD_OUT : undefined;
  }

  /**
   * Asks the store in one of the product's lanes, and learns from its answer. Memory is asked
   * again on entering the lane, not only before: the last unit may go while this one waits in line.
   */
  reserve(productId: string, askStore: () => Promise<ReserveOutcome>): Promise<ReserveOutcome> {
    return this.lanes.run(productId, async () => {
      const learned = this.refusal(productId);
      if (learned) return learned;
      const seen = this.soldOut.returnsSoFar(productId);
      const outcome = await askStore();
      const remaining = remainingNow(outcome);
      if (remaining !== undefined) {
        this.lanes.noteRemaining(productId, remaining);
        // The last unit just went (or had gone): the buyers in line need not ask the store.
        if (remaining === 0) this.soldOut.noteSoldOut(productId, seen);
      }
      return outcome;
    });
  }

  /**
   * Asks the store with no lane (a strategy that lines requests up itself, or one that answers in
   * microseconds), and learns from its answer.
   */
  async learnFrom(productId: string, askStore: () => Promise<ReserveOutcome>): Promise<ReserveOutcome> {
    const seen = this.soldOut.returnsSoFar(productId);
    const outcome = await askStore();
    if (remainingNow(outcome) === 0) this.soldOut.noteSoldOut(productId, seen);
    return outcome;
  }

  /** The store says the product has `remaining` units free after an admin's change. */
  stockChanged(productId: string, remaining: number, unitsAdded: boolean): void {
    if (unitsAdded) this.soldOut.forget(productId);
    this.lanes.noteRemaining(productId, remaining);
  }

  /** Units came back to stock (cancel, expiry, a withdrawn reservation); passes `released` through. */
  unitsBack(released: ReleasedAllocation | null): ReleasedAllocation | null {
    if (released) {
      this.soldOut.forget(released.productId);
      this.lanes.noteReturned(released.productId, released.quantity);
    }
    return released;
  }
}
