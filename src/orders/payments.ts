/**
 * Everything that happens to a held order after the purchase: pay, cancel, expiry.
 *
 * Pay: users debits (a ledger row keyed by the order id, so a retry debits once) → inventory
 * confirms the hold → the order is marked `paid`. When the confirm fails the debit is refunded
 * (also keyed by the order id), so money is never kept for a hold that was not sold. Inventory's
 * allocation is the truth of a hold's state; orders reconciles with it (`reconcile`) whenever the
 * two may have drifted (a crash between steps, a race with the sweeper or a cancel).
 *
 * A refund made before the debit it should undo takes the order's debit slot (a `void` in the
 * ledger): the sweeper may expire an order (and refund it) between a payment's read and its
 * debit, and that debit is then refused (`REFUNDED`, the buyer hears `410 HOLD_EXPIRED`) rather
 * than kept. Every payment that meets an ended order also refunds it, at whatever step it meets
 * it: at its read (a retry), at its confirm, and when its confirm failed and orders says the order
 * ended meanwhile (the hold is gone, so the confirm cannot have sold it). A payment that never
 * comes back is covered by the sweeper's `EndedDebits`, which refunds the debits of orders that
 * ended recently.
 *
 * Expiry (`sweepExpired`) never waits for users: the units go back and the order is marked
 * `expired` even when its refund cannot be made, and that refund is then recorded owed
 * (`owed-refunds.ts`) in the statement that marks the order, for later sweeps to make.
 *
 * @remarks Orders calls inventory and users, never the other way round: the expiry of a held
 * order is driven from here (`sweepExpired`), asking inventory to expire the allocation.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import { isStoreFailure, outcomeUnknown, storeFault } from '../infra/store-errors.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import type { ConfirmOutcome } from '../inventory/stock-strategy.js';
import type { OutsideHold } from '../inventory/inventory.types.js';
import type { UsersClient } from '../users/users.client.js';
import { toOrder, type OrderRow } from './order-rows.js';
import type { EventCounts } from './outbox.js';
import type { OwedRefunds, SweepFailure } from './owed-refunds.js';
import type { PlacedOrders } from './placed-orders.js';
import type { Order, OrderStatus } from './orders.client.js';

export interface PaymentsOptions {
  readonly sql: Sql;
  readonly inventory: InventoryClient;
  readonly users: UsersClient;
  /** Simulated payment-gateway latency inside pay, outside any stock step. */
  readonly paymentDelayMs?: number;
  /** Orders placed through the pipeline by this process, which a payment may write before the consumer. */
  readonly placed?: PlacedOrders;
  /** Counts the outbox events that marking orders writes. */
  readonly events: EventCounts;
  /** The refunds an expiry could not make, which later sweeps make. */
  readonly owed: OwedRefunds;
  /**
   * With the order pipeline on, how long a payment or cancel waits for an order another process
   * placed and the consumer has not written yet (it is written within milliseconds, normally),
   * once inventory has said it holds that order for the buyer.
   */
  readonly pipelineWaitMs?: number;
}

/** How often a payment looks again for an order the pipeline is writing. */
const PIPELINE_POLL_MS = 50;

/** What one expiry sweep did. */
export interface ExpirySweep {
  /** Held orders it marked `expired`. */
  readonly expired: number;
  /** Refunds it could not make and recorded owed, for later sweeps to make. */
  readonly refundsOwed: number;
  /** Why the first refund it could not make failed, if one did. */
  readonly refundFailure: unknown;
  /** Orders it skipped because something other than a store failed on them; the next sweep tries them again. */
  readonly failed: readonly SweepFailure[];
}

/**
 * One sweep's refunds. Once a refund could not reach users, the rest of the sweep owes its
 * refunds without asking: each would wait for the same outage (up to a connection timeout each).
 */
class SweepRefunds {
  usersDown = false;
  owed = 0;
  firstFailure: unknown = undefined;

  failed(error: unknown): void {
    this.firstFailure ??= error;
    if (isStoreFailure(error)) this.usersDown = true;
  }
}

export class Payments {
  private readonly sql: Sql;
  private expired = 0;

  constructor(private readonly options: PaymentsOptions) {
    this.sql = options.sql;
  }

  /** Held orders that have become `expired` since start (any path), for the metrics. */
  get expiredTotal(): number {
    return this.expired;
  }

  /** See `OrdersClient.pay`; refusals are thrown here and turned into outcomes by the caller. */
  async pay(buyerId: string, orderId: string): Promise<Order> {
    const find = () => this.sql<(OrderRow & { lapsed: boolean })[]>`
      select *, expires_at <= now() as lapsed from orders where id = ${orderId} and buyer_id = ${buyerId}`;
    const [row] = await this.orPlacedHere(buyerId, orderId, find);
    if (!row) throw await this.notFound(buyerId, orderId);
    let current: OrderRow = row;
    if (row.status === 'held' && row.lapsed) {
      // Past its expiry by the database's clock: expire it now rather than take money for it.
      current = await this.expireHeld(row);
    }
    switch (current.status) {
      case 'held':
        return this.settle(current);
      case 'paid':
        // A concurrent attempt finished while this one started: the same outcome, not a second sale.
        if (current !== row) return toOrder(current);
        throw new DomainError('ORDER_ALREADY_PAID', undefined, { orderId, orderStatus: 'paid' });
      case 'cancelled':
        // A payment of this order may have debited after the cancel refunded it (a retry of one
        // whose confirm failed, say): nothing is kept for it.
        await this.refundOrOwe(current);
        throw new DomainError('ORDER_NOT_PAYABLE', 'the order was cancelled', { orderId, orderStatus: 'cancelled' });
      case 'expired':
        await this.refundOrOwe(current);
        throw holdExpired(orderId);
    }
  }

  async cancel(buyerId: string, orderId: string): Promise<Order> {
    const [row] = await this.orPlacedHere(buyerId, orderId, () => this.sql<OrderRow[]>`select * from orders where id = ${orderId} and buyer_id = ${buyerId}`);
    if (!row) throw new DomainError('ORDER_NOT_FOUND', undefined, { orderId });
    const after = row.status === 'held' ? await this.cancelHeld(row) : row;
    if (after.status === 'cancelled') return toOrder(after);
    throw new DomainError('ORDER_NOT_CANCELLABLE', `the order is ${after.status}`, { orderId, orderStatus: after.status });
  }

  /**
   * Reads the order; if it is not there but this process placed it through the pipeline for this
   * buyer (the consumer has not written it yet), writes it now and reads again. If another process
   * placed it, inventory's gate holds it for the buyer: then the consumer writes it shortly, and
   * this waits for it. Any other id is answered at once: an id nobody placed, or another buyer's,
   * costs one read, not a wait.
   */
  private async orPlacedHere<Row>(buyerId: string, orderId: string, find: () => Promise<Row[]>): Promise<Row[]> {
    let rows = await find();
    const waitMs = this.options.pipelineWaitMs ?? 0;
    if (rows.length > 0 || this.options.placed === undefined || waitMs <= 0) return rows;
    // Read again once written: the consumer may have written it just now, first.
    if (await this.options.placed.writeIfPlacedHere(buyerId, orderId)) return find();
    const known = await this.options.inventory.outsideHold(buyerId, orderId).catch((error: unknown): OutsideHold => {
      if (isStoreFailure(error)) return 'unreachable';
      throw error;
    });
    if (known === 'none') return rows;
    // Paid or ended in the gate: a payment writes the order before it confirms, so the first read
    // raced that write; an order that was never written is not coming.
    if (known === 'settled') return find();
    // Held for this buyer (on its way), or the gate cannot say now: wait for it, as long as the
    // pipeline takes, the per-buyer limits bounding how many such waits a buyer has at once.
    const until = Date.now() + waitMs;
    do {
      rows = await find();
      if (rows.length > 0) return rows;
      await sleep(PIPELINE_POLL_MS);
    } while (Date.now() < until);
    return rows;
  }

  /**
   * Why an order id has no order: its hold was given up before an order was ever recorded for it
   * (a placed order the pipeline could not write, voided with its units back; a reservation whose
   * record failed) is `HOLD_EXPIRED`, as for any lapsed hold; anything else is `ORDER_NOT_FOUND`.
   */
  private async notFound(buyerId: string, orderId: string): Promise<DomainError> {
    const allocation = await this.options.inventory.allocation(orderId);
    if (allocation !== null && allocation.buyerId === buyerId && (allocation.status === 'cancelled' || allocation.status === 'expired')) {
      return holdExpired(orderId);
    }
    return new DomainError('ORDER_NOT_FOUND', undefined, { orderId });
  }

  /** Debit → confirm → paid, for an order that is held; compensates when the confirm fails. */
  async settle(row: OrderRow): Promise<Order> {
    const delay = this.options.paymentDelayMs ?? 0;
    if (delay > 0) await sleep(delay);
    const movement = { userId: row.buyer_id, orderId: row.id, amountCents: row.amount_cents };
    const debit = await this.options.users.debit(movement);
    if (!debit.ok && debit.reason === 'REFUNDED') {
      // The hold ended and was refunded while this payment was on its way (the sweeper expired
      // it, a cancel, or an earlier attempt's compensation): nothing was taken, nothing will be.
      throw (await this.endedMeanwhile(row.id)) === 'cancelled' ? cancelledRefunded(row.id) : holdExpired(row.id);
    }
    if (!debit.ok) {
      throw new DomainError(
        'INSUFFICIENT_FUNDS',
        `the balance (${debit.balanceCents} cents) does not cover the order (${row.amount_cents} cents)`,
        { orderId: row.id, balanceCents: debit.balanceCents, amountCents: row.amount_cents },
      );
    }
    // From here the debit is made: a store failure leaves the payment half done, never "not done".
    // A retry finishes it (the debit is not taken twice); if none comes, the hold expires and the
    // sweeper refunds the debit.
    let confirmed: ConfirmOutcome;
    try {
      confirmed = await afterDebit(row.id, () => this.options.inventory.confirm(row.id));
    } catch (error) {
      // The confirm's outcome is unknown. If orders has ended the order meanwhile, the hold is gone
      // for good (orders marks an order ended only once inventory has ended its hold), so the
      // confirm cannot have sold it: refund now rather than leave the money to a retry.
      const ended = await this.endedMeanwhile(row.id);
      if (ended === undefined) throw error;
      await this.refundOrOwe(row);
      throw ended === 'expired' ? holdExpired(row.id) : cancelledRefunded(row.id);
    }
    if (confirmed.ok) return toOrder(await afterDebit(row.id, () => this.mark(row.id, 'paid')));
    await this.refundOrOwe(row);
    switch (confirmed.reason) {
      case 'CANCELLED':
        await this.mark(row.id, 'cancelled');
        throw cancelledRefunded(row.id);
      case 'EXPIRED':
      case 'NOT_FOUND':
        await this.options.inventory.expire(row.id);
        await this.mark(row.id, 'expired');
        throw holdExpired(row.id);
    }
  }

  /** `expired` or `cancelled` when orders has ended the order; `undefined` when it is held, paid, or orders cannot say. */
  private async endedMeanwhile(orderId: string): Promise<'expired' | 'cancelled' | undefined> {
    try {
      const [current] = await this.sql<Pick<OrderRow, 'status'>[]>`select status from orders where id = ${orderId}`;
      return current?.status === 'expired' || current?.status === 'cancelled' ? current.status : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Refunds the debit of an order whose hold is gone, if it had one. A refund users cannot take now
   * (a store failure) is recorded in `owed_refunds` instead, for the sweeper to make, so the
   * payment still answers what happened to the hold; only if orders cannot record it either does
   * the failure reach the caller (and the sweeper's `EndedDebits` finds the debit later).
   */
  private async refundOrOwe(row: OrderRow): Promise<void> {
    try {
      await this.options.users.refund({ userId: row.buyer_id, orderId: row.id });
    } catch (error) {
      if (!isStoreFailure(error)) throw error;
      const owed = await this.sql`
        insert into owed_refunds (order_id, buyer_id) values (${row.id}, ${row.buyer_id})
        on conflict (order_id) do nothing returning order_id`.catch(() => {
        throw error;
      });
      this.options.owed.recorded(owed.length);
    }
  }

  /** Releases a held order's units at once and marks it cancelled (or reconciles it). */
  async cancelHeld(row: OrderRow): Promise<OrderRow> {
    const released = await this.options.inventory.release(row.id);
    if (!released) return this.reconcile(row);
    // A pay that debited and died before its confirm: give the money back.
    await this.options.users.refund({ userId: row.buyer_id, orderId: row.id });
    return this.mark(row.id, 'cancelled');
  }

  /**
   * Expires every held order whose expiry has passed by the orders database's clock: asks
   * inventory to expire its hold (the units go back to stock), refunds any debit of an attempt
   * that never finished, and marks the order `expired`, or reconciles it with what inventory
   * says happened. Run every second and at start-up, so holds that lapsed while the server was
   * down come back.
   *
   * A refund that cannot be made (users unreachable) is recorded owed as the order is marked, so
   * units come back whatever users is doing. An order that fails for another reason is skipped
   * and the batch goes on; a store failure (inventory or orders unreachable) ends the sweep, since
   * every order after it would fail the same way, and is thrown once the orders before it are done.
   */
  async sweepExpired(batchSize = 500): Promise<ExpirySweep> {
    const refunds = new SweepRefunds();
    const failed: SweepFailure[] = [];
    let expired = 0;
    for (;;) {
      const skipped = failed.map((failure) => failure.orderId);
      const due = await this.sql<OrderRow[]>`
        select * from orders
         where status = 'held' and expires_at <= now() and not (id = any(${this.sql.array(skipped)}::uuid[]))
         order by expires_at limit ${batchSize}`;
      let changed = 0;
      for (const row of due) {
        let after: OrderRow;
        try {
          after = await this.expireHeld(row, refunds);
        } catch (error) {
          if (isStoreFailure(error)) throw error;
          failed.push({ orderId: row.id, error });
          continue;
        }
        if (after.status !== 'held') changed += 1;
        if (after.status === 'expired') expired += 1;
      }
      // Rows inventory still holds (its clock is behind ours) stay for the next sweep.
      if (due.length < batchSize || changed === 0) {
        return { expired, refundsOwed: refunds.owed, refundFailure: refunds.firstFailure, failed };
      }
    }
  }

  /**
   * Expires a held order whose expiry passed (or reconciles it, when inventory says otherwise).
   * `refunds`: the sweep's, which owes a refund it cannot make; without it (a payment found the
   * hold lapsed) a refund that fails fails the call.
   */
  private async expireHeld(row: OrderRow, refunds?: SweepRefunds): Promise<OrderRow> {
    const released = await this.options.inventory.expire(row.id);
    if (!released) return this.reconcile(row, refunds);
    return this.refundAndMark(row, 'expired', refunds);
  }

  /** Brings a held order in line with its allocation, inventory's truth. */
  private async reconcile(row: OrderRow, refunds?: SweepRefunds): Promise<OrderRow> {
    const allocation = await this.options.inventory.allocation(row.id);
    const status: OrderStatus = allocation?.status ?? 'expired';
    switch (status) {
      case 'held':
        return row;
      case 'paid':
        return this.mark(row.id, 'paid');
      case 'cancelled':
      case 'expired':
        return this.refundAndMark(row, status, refunds);
    }
  }

  /**
   * Refunds any debit of an order whose hold is gone, then marks the order `status`. In a sweep
   * (`refunds`), a refund that cannot be made is recorded owed instead, in the statement that
   * marks the order: the order never leaves `held` with its refund neither made nor owed.
   */
  private async refundAndMark(row: OrderRow, status: 'expired' | 'cancelled', refunds?: SweepRefunds): Promise<OrderRow> {
    const movement = { userId: row.buyer_id, orderId: row.id };
    if (refunds === undefined) {
      await this.options.users.refund(movement);
      return this.mark(row.id, status);
    }
    if (!refunds.usersDown) {
      const made = await this.options.users.refund(movement).then(
        () => true,
        (error: unknown) => {
          refunds.failed(error);
          return false;
        },
      );
      if (made) return this.mark(row.id, status);
    }
    const { row: after, owed } = await this.markOwingRefund(row, status);
    refunds.owed += owed;
    return after;
  }

  /**
   * Marks a held order `expired` or `cancelled` and records its refund owed, in one statement (the
   * change's event with them). The refund is owed unless the order is paid, even when another
   * process marked it first: owing one that was made is harmless, losing one is not.
   */
  private async markOwingRefund(row: OrderRow, status: 'expired' | 'cancelled'): Promise<{ row: OrderRow; owed: number }> {
    const [result] = await this.sql<(Partial<OrderRow> & { owed_now: number })[]>`
      with changed as (
        update orders set status = ${status}, updated_at = now()
         where id = ${row.id} and status = 'held'
        returning *),
      event as (
        insert into order_events (order_id, kind) select id, status from changed),
      owed as (
        insert into owed_refunds (order_id, buyer_id)
        select id, buyer_id from orders where id = ${row.id} and status <> 'paid'
        on conflict (order_id) do nothing
        returning order_id)
      select changed.*, (select count(*) from owed)::int4 as owed_now
        from (select) as one left join changed on true`;
    const owed = result?.owed_now ?? 0;
    this.options.owed.recorded(owed);
    if (result?.status !== undefined && result.status !== null) {
      this.options.events.add(status, 1);
      if (status === 'expired') this.expired += 1;
      const { owed_now: _owedNow, ...changed } = result;
      return { row: changed as OrderRow, owed };
    }
    const [current] = await this.sql<OrderRow[]>`select * from orders where id = ${row.id}`;
    if (!current) throw new Error(`order ${row.id} vanished`);
    return { row: current, owed };
  }

  /**
   * Moves a held order to `status` and returns the row as it now is, with the change's event in
   * the outbox. `paid` follows a confirmed allocation, which is final, so it wins over whatever
   * orders recorded meanwhile.
   */
  private async mark(orderId: string, status: Exclude<OrderStatus, 'held'>): Promise<OrderRow> {
    // The change's outbox event is written from the updated row, in the same statement: no row
    // updated (the order had moved on already), no event.
    const [row] = await this.sql<OrderRow[]>`
      with changed as (
        update orders set status = ${status}, updated_at = now()
         where id = ${orderId} and (status = 'held' or (${status} = 'paid' and status <> 'paid'))
        returning *),
      event as (
        insert into order_events (order_id, kind) select id, status from changed)
      select * from changed`;
    if (row) {
      this.options.events.add(status, 1);
      if (status === 'expired') this.expired += 1;
      return row;
    }
    const [current] = await this.sql<OrderRow[]>`select * from orders where id = ${orderId}`;
    if (!current) throw new Error(`order ${orderId} vanished`);
    return current;
  }
}

/** Runs a step that follows a debit: any store failure in it is an outcome the buyer cannot know. */
async function afterDebit<T>(orderId: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    const named = error instanceof DomainError && (error.code === 'STORE_UNAVAILABLE' || error.code === 'OUTCOME_UNKNOWN');
    if (named || storeFault(error) !== undefined) throw outcomeUnknown(named ? String(error.extras['store']) : 'orders', orderId);
    throw error;
  }
}

function cancelledRefunded(orderId: string): DomainError {
  return new DomainError('ORDER_NOT_PAYABLE', 'the order was cancelled; the payment was refunded', { orderId, orderStatus: 'cancelled' });
}

function holdExpired(orderId: string): DomainError {
  return new DomainError('HOLD_EXPIRED', 'the hold expired before it was paid; the unit is back in stock', {
    orderId,
    orderStatus: 'expired',
  });
}
