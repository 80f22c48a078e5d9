/**
 * Reserve lanes: how many reservations of one product this process has with the store at once.
 * A product gets as many lanes as it was last known to have units left, and never fewer than
 * `width`; the rest wait here, first come first served, and ask the sold-out hints again when
 * their turn comes.
 *
 * @remarks Why: a single-statement strategy (`atomic`) never waits for a connection, so
 * postgres.js pipelines every reservation a storm brings straight onto its connections: at a
 * drop of 1 unit, hundreds would be on their way to PostgreSQL before the first "sold out" came
 * back, each a round trip to learn the same thing. With lanes, buyers beyond the stock wait for
 * the store's answer about the stock instead; while plenty is left (`hot`), nothing waits. The
 * locking strategies already queue for a connection, so lanes as wide as the pool change little
 * for them. A lane only orders work: it never refuses and never sells; the store's atomic step
 * still guards the stock (DESIGN.md, Scale-out), and a stale count only changes how many wait.
 * A keyed semaphore this small is not worth a dependency. Keyed by the product id's one spelling
 * (`infra/canonical-id.ts`): a second spelling would be a second set of lanes for one product.
 */
import { canonicalId } from '../infra/canonical-id.js';

export class ReserveLanes {
  private readonly lanes = new Map<string, { inFlight: number; waiting: (() => void)[] }>();
  /** Units left by the store's last word on the product; absent: not known (no limit). */
  private readonly unitsLeft = new Map<string, number>();

  /** `width` 0: no limit at all. */
  constructor(private readonly width: number) {}

  /** The store said how many units are left (after a reservation, a refusal, a change). */
  noteRemaining(productId: string, remaining: number): void {
    this.unitsLeft.set(canonicalId(productId, 'productId'), remaining);
  }

  /** Units came back to stock. */
  noteReturned(productId: string, quantity: number): void {
    const known = this.unitsLeft.get(productId);
    if (known !== undefined) this.unitsLeft.set(productId, known + quantity);
  }

  /** Runs `work` in one of the product's lanes, waiting for one to free up if all are taken. */
  async run<T>(productId: string, work: () => Promise<T>): Promise<T> {
    canonicalId(productId, 'productId');
    if (this.width === 0) return work();
    await this.enter(productId);
    try {
      return await work();
    } finally {
      this.leave(productId);
    }
  }

  private limit(productId: string): number {
    return Math.max(this.width, this.unitsLeft.get(productId) ?? Number.POSITIVE_INFINITY);
  }

  private enter(productId: string): Promise<void> | undefined {
    let lane = this.lanes.get(productId);
    if (lane === undefined) {
      lane = { inFlight: 0, waiting: [] };
      this.lanes.set(productId, lane);
    }
    if (lane.waiting.length === 0 && lane.inFlight < this.limit(productId)) {
      lane.inFlight += 1;
      return undefined;
    }
    return new Promise((resolve) => lane.waiting.push(resolve));
  }

  /** Frees a lane and lets as many in line go as the product has lanes now (it may have more, or fewer). */
  private leave(productId: string): void {
    const lane = this.lanes.get(productId);
    if (lane === undefined) return;
    lane.inFlight -= 1;
    while (lane.waiting.length > 0 && lane.inFlight < this.limit(productId)) {
      lane.inFlight += 1;
      lane.waiting.shift()?.();
    }
    if (lane.inFlight === 0 && lane.waiting.length === 0) this.lanes.delete(productId);
  }
}
