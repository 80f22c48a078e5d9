/**
 * Returns stranded units safely while a sale is on, and catches the gate up with PostgreSQL.
 *
 * A hold is stranded when its publish was never confirmed (the buyer heard `OUTCOME_UNKNOWN` or
 * `STORE_UNAVAILABLE`, or the process died before it published) and PostgreSQL has no allocation
 * for it. The gate lists every hold it grants until the broker confirms its order (`unchecked`);
 * a confirmed order is off the list before its buyer hears `201`, so the reconciler never voids
 * an order that is only waiting in the queue, however far behind the consumer is. It looks at
 * holds listed for more than twice the confirm timeout: by then a publish has been confirmed or
 * answered `OUTCOME_UNKNOWN`, with a confirm timeout's slack for the time between the grant and
 * the publish. Each hold is looked up once, so a pass costs the holds of the last few seconds,
 * not every hold the product ever had. The reconciler first voids its id in PostgreSQL (a
 * row the consumer's insert then finds, so a late message for it records no order, and a retry
 * of it learns it failed), and only then gives its unit back in the gate. A hold the consumer
 * wrote first is not stranded, and is left alone: the id decides, once.
 *
 * It also applies PostgreSQL's terms to the gate again (absolute values: a change the gate
 * missed, say during a Redis blip, is caught up), reports each product's drift, and starts the
 * rebuild of every product the gate does not have whole (a key evicted or lost with a restart),
 * so a product nobody is buying right now is ready again when buyers come back.
 */
import type { Sql } from '../infra/database.js';
import type { InventoryService } from '../inventory/inventory.service.js';
import type { RedisGate } from '../inventory/redis/gate.js';

/** Holds looked up in PostgreSQL per statement. */
const RECONCILE_BATCH = 1000;

/**
 * How old a hold is when the reconciler looks it up: twice the confirm timeout. The gate keeps an
 * ended hold in `holds` that long after it ended, too (`GateOptions.endedHoldsKeptMs`).
 */
export function reconcilerHorizonMs(confirmTimeoutMs: number): number {
  return 2 * confirmTimeoutMs;
}

export interface ProductDrift {
  readonly productId: string;
  /** Holds found stranded, and how many of them were voided and returned now. */
  readonly stranded: number;
  readonly returned: number;
  /** Units the gate has held or paid that PostgreSQL has not (yet): on their way, or stranded. */
  readonly unitsNotInPostgres: number;
  /** The gate's `stocked` minus PostgreSQL's `stock` before the catch-up (0 when in step). */
  readonly stockDrift: number;
  /** `false`: the gate does not have the product whole (its rebuild was started). */
  readonly loaded: boolean;
}

export interface ReconcileReport {
  readonly products: readonly ProductDrift[];
  readonly stranded: number;
  readonly returned: number;
}

export interface ReconcilerOptions {
  readonly gate: RedisGate;
  readonly sql: Sql;
  readonly inventory: Pick<InventoryService, 'resyncTerms' | 'voidHolds'>;
  readonly confirmTimeoutMs: number;
  /** Starts rebuilding a product the gate does not have whole (`GateRebuilds.start`). */
  readonly rebuild: (productId: string) => void;
}

interface ProductRow {
  id: string;
  stock: number;
  allocated: number;
}

export class Reconciler {
  private totals = { runs: 0, stranded: 0, returned: 0, unitsNotInPostgres: 0, stockDrift: 0, notLoaded: 0 };

  constructor(private readonly options: ReconcilerOptions) {}

  /**
   * Since start, and (`unitsNotInPostgres`, `stockDrift`: units stocked in the gate and not in
   * PostgreSQL's stock or the reverse, summed over products; `notLoaded`: products not whole in
   * the gate) as of the last pass.
   */
  get stats(): {
    readonly runs: number;
    readonly stranded: number;
    readonly returned: number;
    readonly unitsNotInPostgres: number;
    readonly stockDrift: number;
    readonly notLoaded: number;
  } {
    return { ...this.totals };
  }

  async run(): Promise<ReconcileReport> {
    const { gate, sql } = this.options;
    const products = await sql<ProductRow[]>`
      select p.id, p.stock,
             coalesce((select sum(a.quantity) from allocations a where a.product_id = p.id and a.status in ('held', 'paid')), 0)::int as allocated
        from products p where p.strategy = 'redis-lua' order by p.created_at`;
    const report: ProductDrift[] = [];
    const cutoff = (await gate.now()) - reconcilerHorizonMs(this.options.confirmTimeoutMs);
    for (const product of products) report.push(await this.product(product, cutoff));
    const stranded = report.reduce((sum, drift) => sum + drift.stranded, 0);
    const returned = report.reduce((sum, drift) => sum + drift.returned, 0);
    this.totals = {
      runs: this.totals.runs + 1,
      stranded: this.totals.stranded + stranded,
      returned: this.totals.returned + returned,
      unitsNotInPostgres: report.reduce((sum, drift) => sum + drift.unitsNotInPostgres, 0),
      stockDrift: report.reduce((sum, drift) => sum + Math.abs(drift.stockDrift), 0),
      notLoaded: report.filter((drift) => !drift.loaded).length,
    };
    return { products: report, stranded, returned };
  }

  private async product(product: ProductRow, cutoff: number): Promise<ProductDrift> {
    const { gate, inventory } = this.options;
    const before = await gate.stockFigures(product.id);
    if (before === null) {
      this.options.rebuild(product.id);
      return { productId: product.id, stranded: 0, returned: 0, unitsNotInPostgres: 0, stockDrift: 0, loaded: false };
    }
    let stranded = 0;
    let returned = 0;
    for (;;) {
      const batch = await gate.uncheckedBefore(product.id, cutoff, RECONCILE_BATCH);
      // One statement voids every id no row has; an id the consumer wrote first is not stranded.
      const voided = await inventory.voidHolds(
        batch.held.map(({ orderId, hold }) => ({
          id: orderId,
          productId: product.id,
          buyerId: hold.buyerId,
          quantity: hold.quantity,
          amountCents: hold.amountCents,
          expiresAt: new Date(hold.expiresAt).toISOString(),
          madeAt: new Date(hold.madeAt).toISOString(),
        })),
      );
      for (const orderId of voided) {
        const released = await gate.release(product.id, orderId, 'cancelled', false);
        if (released.ok) returned += released.released.quantity;
      }
      stranded += voided.length;
      // Only now: a pass that failed above looks the same holds up again next time.
      await gate.forgetChecked(product.id, batch.ids);
      if (batch.ids.length < RECONCILE_BATCH) break;
    }
    await inventory.resyncTerms(product.id);
    const after = (await gate.stockFigures(product.id)) ?? before;
    return {
      productId: product.id,
      stranded,
      returned,
      // Held or paid in the gate (stocked = remaining + held + paid) and not in PostgreSQL.
      unitsNotInPostgres: after.stocked - after.remaining - product.allocated,
      stockDrift: before.stocked - product.stock,
      loaded: true,
    };
  }
}
