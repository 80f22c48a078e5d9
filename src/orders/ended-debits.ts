/**
 * The sweeper's last word on money: refunds the debits of orders that ended (expired or
 * cancelled) and were never refunded.
 *
 * A refund made before the debit it should undo refunds nothing, and a payment can debit after
 * the sweeper or a cancel refunded its order (it read the order held just before). That payment
 * refunds the debit itself when its confirm is refused, and a retry of it does when it finds the
 * order ended (`payments.ts`); this covers the payment that never comes back (its process died, or
 * orders and users failed it after the debit). Every `expired` or `cancelled` event of the outbox
 * is looked at once, `graceMs` after it was written, when any payment that read the order held has
 * long made its debit or failed: users says which of those orders were debited and not refunded
 * (`UsersClient.debitsNotRefunded`, one statement a page), and those are refunded, or recorded owed
 * (`owed-refunds.ts`) when users cannot take the refund now.
 *
 * @remarks The events are followed by `seq`, between a cursor and a horizon: the highest `seq`
 * taken at least `graceMs` ago (`pg_sequence_last_value`, noted at every sweep), so each event is
 * read once, by its unique index, and never before its grace. A process starts `LOOKBACK` behind,
 * so a restart does not skip the orders that ended just before it.
 */
import type { Sql } from '../infra/database.js';
import type { UsersClient } from '../users/users.client.js';
import type { OwedRefunds } from './owed-refunds.js';

/** How far back a process starts: orders that ended this long before it started are looked at too. */
const LOOKBACK_MINUTES = 15;
/** Events read per page (and order ids users is asked about in one statement). */
const PAGE = 500;
/** Pages per sweep at most, so one sweep after a long outage stays short; the rest wait for the next. */
const MAX_PAGES = 20;

/** An `expired` or `cancelled` event, with its order's buyer. */
interface EndedOrderRow {
  readonly seq: number;
  readonly order_id: string;
  readonly buyer_id: string;
}

export interface EndedDebitsSweep {
  /** Ended orders looked at. */
  readonly checked: number;
  /** Debits of them refunded now (or recorded owed, when users could not take the refund). */
  readonly refunded: number;
}

export class EndedDebits {
  /** The last `seq` looked at; `undefined` until the first sweep places it. */
  private after: number | undefined;
  /** The highest `seq` taken at each past sweep, oldest first: the horizon is the newest one past its grace. */
  private readonly marks: { readonly atMs: number; readonly seq: number }[] = [];

  constructor(
    private readonly sql: Sql,
    private readonly users: Pick<UsersClient, 'debitsNotRefunded' | 'refund'>,
    private readonly owed: OwedRefunds,
    private readonly graceMs: number,
  ) {}

  async sweep(nowMs = Date.now()): Promise<EndedDebitsSweep> {
    const [taken] = await this.sql<{ last: number | null }[]>`
      select pg_sequence_last_value(pg_get_serial_sequence('order_events', 'seq')::regclass) as last`;
    this.marks.push({ atMs: nowMs, seq: Number(taken?.last ?? 0) });
    // The horizon: the newest mark past its grace, kept as the first for the next sweep.
    let horizon: number | undefined;
    while (this.marks[0] !== undefined && nowMs - this.marks[0].atMs >= this.graceMs) {
      horizon = this.marks[0].seq;
      const next = this.marks[1];
      if (next === undefined || nowMs - next.atMs < this.graceMs) break;
      this.marks.shift();
    }
    if (horizon === undefined) return { checked: 0, refunded: 0 };
    this.after ??= await this.start();
    let checked = 0;
    let refunded = 0;
    for (let page = 0; page < MAX_PAGES && this.after < horizon; page += 1) {
      const rows: readonly EndedOrderRow[] = await this.sql<EndedOrderRow[]>`
        select e.seq, e.order_id, o.buyer_id from order_events e join orders o on o.id = e.order_id
         where e.seq > ${this.after} and e.seq <= ${horizon} and e.kind in ('expired', 'cancelled')
           and o.status in ('expired', 'cancelled')
         order by e.seq limit ${PAGE}`;
      const buyers = new Map(rows.map((row) => [row.order_id, row.buyer_id]));
      const debited = buyers.size === 0 ? [] : await this.users.debitsNotRefunded([...buyers.keys()]);
      for (const orderId of debited) {
        const buyerId = buyers.get(orderId);
        if (buyerId === undefined) continue;
        await this.refundOrOwe(orderId, buyerId);
        refunded += 1;
      }
      checked += rows.length;
      // A short page read everything up to the horizon.
      this.after = rows.length < PAGE ? horizon : Number(rows.at(-1)?.seq ?? horizon);
    }
    return { checked, refunded };
  }

  /**
   * The cursor of a process's first sweep: the last event older than the lookback (0 when every
   * event kept is younger). Read from the newest backwards, so it walks the lookback's events only.
   */
  private async start(): Promise<number> {
    const [last] = await this.sql<{ seq: number }[]>`
      select seq from order_events where created_at < now() - make_interval(mins => ${LOOKBACK_MINUTES}) order by seq desc limit 1`;
    return Number(last?.seq ?? 0);
  }

  private async refundOrOwe(orderId: string, buyerId: string): Promise<void> {
    try {
      await this.users.refund({ userId: buyerId, orderId });
    } catch {
      // The owed refunds' step makes it once users takes it (and says why it waits).
      const owed = await this.sql`
        insert into owed_refunds (order_id, buyer_id) values (${orderId}, ${buyerId})
        on conflict (order_id) do nothing returning order_id`;
      this.owed.recorded(owed.length);
    }
  }
}
