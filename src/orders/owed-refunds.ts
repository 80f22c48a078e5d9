/**
 * Refunds orders owes and could not make yet (`owed_refunds`, migration 009): the sweeper records
 * one when it expires a held order while the refund cannot be made (users unreachable), and makes
 * them on later sweeps. A refund is keyed by the order id in users' ledger, so making one again is
 * harmless: none is lost (the row goes only once users answered) and none is doubled.
 */
import type { Sql } from '../infra/database.js';
import { isStoreFailure } from '../infra/store-errors.js';
import type { UsersClient } from '../users/users.client.js';

/** An order a sweep step could not finish, and why; the next sweep tries it again. */
export interface SweepFailure {
  readonly orderId: string;
  readonly error: unknown;
}

/** What one retry of the owed refunds did. */
export interface RefundRetry {
  /** Owed refunds made (and no longer owed). */
  readonly made: number;
  /** Cents they gave back (an order never debited, or refunded already, gives back 0). */
  readonly refundedCents: number;
  /** Refunds that failed for a reason of their own; the others were tried. */
  readonly failed: readonly SweepFailure[];
  /** The users store failure that ended the pass (the refunds after it wait for the next one), if any. */
  readonly usersDown: unknown;
}

/** How much of a failure's message `last_error` keeps. */
const LAST_ERROR_CHARS = 500;

export class OwedRefunds {
  /** Refunds owed, as the last retry counted them and the changes since; unknown before the first retry. */
  private owed: number | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly users: Pick<UsersClient, 'refund'>,
  ) {}

  /**
   * Refunds owed now, for the metrics: counted by each retry (which reads the table anyway) and
   * kept as this process owes and makes them, so a scrape costs no query. 0 before the first sweep.
   */
  get count(): number {
    return this.owed ?? 0;
  }

  /** Notes refunds this process recorded owed (see `Payments`). */
  recorded(count: number): void {
    if (this.owed !== undefined) this.owed += count;
  }

  /**
   * Makes the owed refunds, oldest first, `batchSize` at a time until none is left. A refund that
   * fails for a reason of its own is skipped (the rest are made); a failure to reach users ends the
   * pass, since every refund after it would fail the same way.
   */
  async retry(batchSize = 200): Promise<RefundRetry> {
    let made = 0;
    let refundedCents = 0;
    const failed: SweepFailure[] = [];
    const skipped: string[] = [];
    for (;;) {
      const due = await this.sql<{ order_id: string; buyer_id: string; owed: number }[]>`
        select order_id, buyer_id, count(*) over ()::int8 as owed from owed_refunds
         where not (order_id = any(${this.sql.array(skipped)}::uuid[]))
         order by owed_since, order_id limit ${batchSize}`;
      if (skipped.length === 0) this.owed = due[0]?.owed ?? 0;
      for (const row of due) {
        let cents: number;
        try {
          cents = await this.users.refund({ userId: row.buyer_id, orderId: row.order_id });
        } catch (error) {
          await this.sql`
            update owed_refunds set attempts = attempts + 1, last_error = ${describe(error)} where order_id = ${row.order_id}`;
          if (isStoreFailure(error)) return { made, refundedCents, failed, usersDown: error };
          failed.push({ orderId: row.order_id, error });
          skipped.push(row.order_id);
          continue;
        }
        const gone = await this.sql`delete from owed_refunds where order_id = ${row.order_id} returning order_id`;
        if (gone.length > 0 && this.owed !== undefined) this.owed -= 1;
        made += 1;
        refundedCents += cents;
      }
      if (due.length < batchSize) return { made, refundedCents, failed, usersDown: undefined };
    }
  }
}

function describe(error: unknown): string {
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return message.slice(0, LAST_ERROR_CHARS);
}
