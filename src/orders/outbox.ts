/**
 * The outbox of order changes (`order_events`, migration 008): what each write path counts, the
 * feed a consumer pages through over HTTP, the backlog the relay has not published yet, and the
 * retention of relayed events. The events themselves are written by the statements that change an
 * order (`order-records.ts`, `placed-orders.ts`, `payments.ts`), never from here: an event exists
 * exactly when its change committed. The relay to RabbitMQ is `outbox-relay.ts`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../infra/database.js';
import { toOrder } from './order-rows.js';
import type { OrderEvent, OrderEventsPage, OrderStatus } from './orders.client.js';

/**
 * An event with its order's row, read together (`order_events e join orders o`): the order's
 * fields other than its status never change once it is recorded, and the event's kind is the
 * status the change gave it, so together they are the order as the API showed it at the change.
 */
export interface OrderEventRow {
  id: string;
  seq: number;
  kind: OrderStatus;
  order_id: string;
  created_at: Date;
  buyer_id: string;
  product_id: string;
  quantity: number;
  amount_cents: number;
  expires_at: Date;
  order_created_at: Date;
}

export function toOrderEvent(row: OrderEventRow): OrderEvent {
  const order = toOrder({
    id: row.order_id,
    status: row.kind,
    buyer_id: row.buyer_id,
    product_id: row.product_id,
    quantity: row.quantity,
    amount_cents: row.amount_cents,
    expires_at: row.expires_at,
    created_at: row.order_created_at,
  });
  return { id: row.id, seq: row.seq, kind: row.kind, orderId: row.order_id, occurredAt: row.created_at.toISOString(), order };
}

/** Events this process wrote since start, by kind (for the metrics). */
export class EventCounts {
  private readonly written: Record<OrderStatus, number> = { held: 0, paid: 0, expired: 0, cancelled: 0 };

  add(kind: OrderStatus, events: number): void {
    this.written[kind] += events;
  }

  get byKind(): Readonly<Record<OrderStatus, number>> {
    return { ...this.written };
  }
}

/**
 * How long a page of the feed waits for the transactions that may still commit events below its
 * horizon: normally they are single statements that finish in milliseconds.
 */
const SETTLE_WAIT_MS = 1_000;
const SETTLE_POLL_MS = 5;
/** Events deleted per statement by the retention, so no statement holds many row locks for long. */
const REMOVE_BATCH = 10_000;
/** The backlog is counted up to this many (a scrape must stay cheap when the broker was away for long). */
const BACKLOG_COUNT_CAP = 1_000_000;

export class Outbox {
  readonly counts = new EventCounts();
  /** The highest `seq` proven settled: no event at or below it can still commit. Only grows. */
  private settled = 0;

  constructor(private readonly sql: Sql) {}

  /** See `OrdersClient.events`. */
  async page(after: number, limit: number): Promise<OrderEventsPage> {
    const horizon = await this.settledHorizon(after);
    const rows =
      horizon <= after
        ? []
        : await this.sql<OrderEventRow[]>`
            select e.id, e.seq, e.kind, e.order_id, e.created_at, o.buyer_id, o.product_id, o.quantity, o.amount_cents,
                   o.expires_at, o.created_at as order_created_at
              from order_events e join orders o on o.id = e.order_id
             where e.seq > ${after} and e.seq <= ${horizon} order by e.seq limit ${limit}`;
    const events = rows.map(toOrderEvent);
    return { events, nextAfter: events.at(-1)?.seq ?? after };
  }

  /**
   * The highest `seq` below which no event can still appear, so a page cut there is never
   * overtaken by an event committed later with a smaller number.
   *
   * @remarks `seq` is taken when an event is inserted, not when it commits: a transaction that took
   * 5 may commit after one that took 6, and a reader that had seen 6 would never look back for 5.
   * So a page stops at the highest number taken so far, read first, and waits until every
   * transaction running just after that read has ended: each of them that holds a number up to it
   * took the number after it had a transaction id (every event is inserted from the `returning` of
   * its order's write, which gives the transaction its id), so the snapshot lists it. Transactions
   * that start later take larger numbers. If one runs longer than `SETTLE_WAIT_MS`, the page stops
   * at the last horizon proven instead.
   */
  private async settledHorizon(after: number): Promise<number> {
    const [taken] = await this.sql<{ last: number | null }[]>`
      select pg_sequence_last_value(pg_get_serial_sequence('order_events', 'seq')::regclass) as last`;
    const last = taken?.last ?? 0;
    if (last <= after || last <= this.settled) return last;
    const [snapshot] = await this.sql<{ running: string[] }[]>`
      select array(select pg_snapshot_xip(pg_current_snapshot())::text) as running`;
    let running = snapshot?.running ?? [];
    const until = Date.now() + SETTLE_WAIT_MS;
    while (running.length > 0) {
      if (Date.now() >= until) return this.settled;
      await sleep(SETTLE_POLL_MS);
      const still = await this.sql<{ xid: string }[]>`
        select x::text as xid from unnest(${this.sql.array(running)}::text[]) as t(x)
         where pg_xact_status(x::xid8) = 'in progress'`;
      running = still.map((row) => row.xid);
    }
    this.settled = Math.max(this.settled, last);
    return last;
  }

  /** Events not relayed yet, and the age of the oldest of them, in seconds (0 when none). */
  async backlog(): Promise<{ readonly events: number; readonly oldestSeconds: number }> {
    const [row] = await this.sql<{ events: number; oldest_seconds: number | null }[]>`
      select (select count(*) from (select 1 from order_events where relayed_at is null limit ${BACKLOG_COUNT_CAP}) as capped)::int8 as events,
             (select extract(epoch from now() - created_at)::float8 from order_events
               where relayed_at is null order by seq limit 1) as oldest_seconds`;
    return { events: row?.events ?? 0, oldestSeconds: Math.max(0, row?.oldest_seconds ?? 0) };
  }

  /**
   * Deletes events relayed more than `hours` ago; returns how many. Unrelayed events are kept:
   * the broker is still owed them. Oldest first, by `seq`, where the relayed ones are.
   */
  async removeRelayed(hours: number): Promise<number> {
    let removed = 0;
    for (;;) {
      const deleted = await this.sql`
        delete from order_events where id in (
          select id from order_events where relayed_at < now() - make_interval(hours => ${hours}) order by seq limit ${REMOVE_BATCH})`;
      removed += deleted.count;
      if (deleted.count < REMOVE_BATCH) return removed;
    }
  }
}
