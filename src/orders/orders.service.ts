/**
 * The orders module: the checkout. A purchase mints the order id first, has inventory reserve
 * under it, then records the order `held`. An allocation whose order was never recorded (a crash
 * in between) simply expires back to stock: no buyer was told "yes" for it.
 *
 * Pay: users debits (a ledger row keyed by the order id, so a retry debits once) → inventory
 * confirms the hold → the order is marked `paid`. When the confirm fails the debit is refunded
 * (also keyed by the order id), so money is never kept for a hold that was not sold. Inventory's
 * allocation is the truth of a hold's state; orders reconciles with it (`reconcile`) whenever the
 * two may have drifted (a crash between steps, a race with the sweeper or a cancel).
 *
 * @remarks Orders calls inventory and users, never the other way round: the expiry of a held
 * order is driven from here (`sweepExpired`), asking inventory to expire the allocation.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import type { AuditOrder } from '../audit/audit.types.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import type { Allocation } from '../inventory/inventory.types.js';
import type { UsersClient } from '../users/users.client.js';
import { PostgresIdempotencyStore, type HeldKey, type IdempotencyStore } from './idempotency.js';
import type { Order, OrdersClient, OrdersPage, OrderStatus, PurchaseOutcome, PurchaseRequest } from './orders.client.js';
import { refusalError } from './refusals.js';

interface OrderRow {
  id: string;
  buyer_id: string;
  product_id: string;
  quantity: number;
  amount_cents: number;
  status: OrderStatus;
  expires_at: Date;
  created_at: Date;
}

export interface OrdersOptions {
  readonly sql: Sql;
  readonly inventory: InventoryClient;
  readonly users: UsersClient;
  readonly newId: () => string;
  /** Simulated payment-gateway latency inside pay, outside any stock step. */
  readonly paymentDelayMs?: number;
  readonly log: { error(object: unknown, message: string): void };
}

export function toOrder(row: OrderRow): Order {
  return {
    id: row.id,
    status: row.status,
    buyerId: row.buyer_id,
    productId: row.product_id,
    quantity: row.quantity,
    amountCents: row.amount_cents,
    expiresAt: row.expires_at.toISOString(),
    createdAt: row.created_at.toISOString(),
  };
}

export class OrdersService implements OrdersClient {
  readonly idempotency: IdempotencyStore;
  private readonly sql: Sql;
  private expired = 0;

  constructor(private readonly options: OrdersOptions) {
    this.sql = options.sql;
    this.idempotency = new PostgresIdempotencyStore(options.sql);
  }

  /** Held orders that have become `expired` since start (any path), for the metrics. */
  get expiredTotal(): number {
    return this.expired;
  }

  /** See {@link OrdersClient.tryPurchase}; `alongReserve` becomes `ReserveRequest.alongside`. */
  async tryPurchase(
    buyerId: string,
    request: PurchaseRequest,
    idempotencyKey?: HeldKey,
    alongReserve?: () => Promise<boolean>,
  ): Promise<PurchaseOutcome> {
    const onKey = request.pay === true ? 'order' : 'answer';
    const held = await this.hold(buyerId, request, idempotencyKey, onKey, alongReserve);
    // Not a row: refused or withdrawn, nothing held.
    if ('ok' in held) return held;
    if (request.pay !== true) return { ok: true, order: toOrder(held) };
    let paid: Order;
    try {
      paid = await this.settle(held);
    } catch (error) {
      // Instant mode answers "no" as a whole: the unit must not stay held for a buyer who was
      // refused. But a fault after the confirm (marking the order) leaves it paid: then the
      // purchase stands, and saying "no" would let a retry with the same key buy and pay again.
      const after = await this.cancelHeld(held).catch((cancelError: unknown) => {
        this.options.log.error({ err: cancelError, orderId: held.id }, 'could not release the hold of an unpaid instant purchase');
        return undefined;
      });
      if (after?.status !== 'paid') throw error;
      paid = toOrder(after);
    }
    if (idempotencyKey !== undefined) {
      // The sale is made: a failure to store its answer must not turn it into an error (the key
      // stays claimed, so a retry is told to wait rather than allowed to buy again).
      await this.idempotency.complete(idempotencyKey, 201, { order: paid }).catch((completeError: unknown) => {
        this.options.log.error({ err: completeError, orderId: paid.id }, 'could not store the answer of an instant purchase');
      });
    }
    return { ok: true, order: paid };
  }

  async pay(buyerId: string, orderId: string): Promise<Order> {
    const [row] = await this.sql<(OrderRow & { lapsed: boolean })[]>`
      select *, expires_at <= now() as lapsed from orders where id = ${orderId} and buyer_id = ${buyerId}`;
    if (!row) throw new DomainError('ORDER_NOT_FOUND', undefined, { orderId });
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
        throw new DomainError('ORDER_NOT_PAYABLE', 'the order was cancelled', { orderId, orderStatus: 'cancelled' });
      case 'expired':
        throw holdExpired(orderId);
    }
  }

  async cancel(buyerId: string, orderId: string): Promise<Order> {
    const row = await this.find(buyerId, orderId);
    const after = row.status === 'held' ? await this.cancelHeld(row) : row;
    if (after.status === 'cancelled') return toOrder(after);
    throw new DomainError('ORDER_NOT_CANCELLABLE', `the order is ${after.status}`, { orderId, orderStatus: after.status });
  }

  async getOrder(buyerId: string, orderId: string): Promise<Order> {
    return toOrder(await this.find(buyerId, orderId));
  }

  async listForBuyer(buyerId: string, limit = 100): Promise<Order[]> {
    const rows = await this.sql<OrderRow[]>`
      select * from orders where buyer_id = ${buyerId} order by created_at desc, id limit ${limit}`;
    return rows.map(toOrder);
  }

  async listForProduct(
    productId: string,
    page: { limit: number; offset: number; status?: OrderStatus },
  ): Promise<OrdersPage> {
    await this.options.inventory.getProduct(productId);
    const status = page.status ?? null;
    const [rows, [count]] = await Promise.all([
      this.sql<OrderRow[]>`
        select * from orders
         where product_id = ${productId} and (${status}::text is null or status = ${status}::text)
         order by created_at desc, id desc limit ${page.limit} offset ${page.offset}`,
      this.sql<{ total: number }[]>`
        select count(*)::int8 as total from orders
         where product_id = ${productId} and (${status}::text is null or status = ${status}::text)`,
    ]);
    const total = count?.total ?? 0;
    const next = page.offset + rows.length;
    return { orders: rows.map(toOrder), total, nextOffset: next < total && rows.length > 0 ? next : null };
  }

  async existing(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const rows = await this.sql<{ id: string }[]>`select id from orders where id = any(${this.sql.array([...ids])}::uuid[])`;
    return new Set(rows.map((row) => row.id));
  }

  async auditOrders(productId: string): Promise<readonly AuditOrder[]> {
    const rows = await this.sql<{ id: string; buyer_id: string; quantity: number; status: OrderStatus }[]>`
      select id, buyer_id, quantity, status from orders where product_id = ${productId}`;
    return rows.map((row) => ({ id: row.id, buyerId: row.buyer_id, quantity: row.quantity, status: row.status }));
  }

  /**
   * Expires every held order whose expiry has passed by the orders database's clock: asks
   * inventory to expire its hold (the units go back to stock), refunds any debit of an attempt
   * that never finished, and marks the order `expired` — or reconciles it with what inventory
   * says happened. Run every second and at start-up, so holds that lapsed while the server was
   * down come back. Returns how many orders it expired.
   */
  async sweepExpired(batchSize = 500): Promise<number> {
    let expired = 0;
    for (;;) {
      const due = await this.sql<OrderRow[]>`
        select * from orders where status = 'held' and expires_at <= now() order by expires_at limit ${batchSize}`;
      let changed = 0;
      for (const row of due) {
        const after = await this.expireHeld(row);
        if (after.status !== 'held') changed += 1;
        if (after.status === 'expired') expired += 1;
      }
      // Rows inventory still holds (its clock is behind ours) stay for the next sweep.
      if (due.length < batchSize || changed === 0) return expired;
    }
  }

  /**
   * Reserves under a fresh order id and records the order `held`. With a (claimed) Idempotency-Key,
   * the same statement writes on the key either the 201 answer (`answer`: a held purchase ends
   * here) or the order's id (`order`: an instant purchase pays before it answers). Either way the
   * order and its key commit together: a crash after this cannot leave a key that a retry would
   * take over and buy a second time. And only while the key still carries this request's claim: a
   * request that stalled until a retry took its key over records no order (its unit goes back) and
   * is told `IDEMPOTENCY_IN_PROGRESS`, so one key never has two orders. A refusal is returned, not
   * thrown (see `tryPurchase`).
   */
  private async hold(
    buyerId: string,
    request: PurchaseRequest,
    key: HeldKey | undefined,
    onKey: 'answer' | 'order',
    alongside?: () => Promise<boolean>,
  ): Promise<OrderRow | Exclude<PurchaseOutcome, { ok: true }>> {
    // Refused from memory before an id is minted: most buyers of a drop end here.
    const known = this.options.inventory.refusalFromMemory(request.productId);
    if (known) return { ok: false, refusal: refusalError(known, request.productId) };
    const orderId = this.options.newId();
    const outcome = await this.options.inventory.reserve({
      allocationId: orderId,
      productId: request.productId,
      buyerId,
      quantity: request.quantity,
      ...(alongside ? { alongside } : {}),
    });
    if (!outcome.ok) {
      return outcome.reason === 'WITHDRAWN' ? { ok: false, withdrawn: true } : { ok: false, refusal: refusalError(outcome, request.productId) };
    }
    const { allocation } = outcome;
    let row: OrderRow | undefined;
    try {
      row = await this.recordOrder(orderId, buyerId, allocation, key, onKey);
    } catch (error) {
      // The buyer is told "no", so the unit must not stay held: give it back now rather than at
      // expiry. If this fails too, the sweeper returns it when the hold expires.
      await this.releaseUnrecorded(orderId);
      throw error;
    }
    if (row) return row;
    // Nothing recorded: the key is no longer this request's (a retry took it over, see above).
    await this.releaseUnrecorded(orderId);
    return {
      ok: false,
      refusal: new DomainError('IDEMPOTENCY_IN_PROGRESS', 'this Idempotency-Key was taken over by a later request', { key: key?.key }, 1),
    };
  }

  private async releaseUnrecorded(orderId: string): Promise<void> {
    await this.options.inventory.release(orderId).catch((releaseError: unknown) => {
      this.options.log.error({ err: releaseError, orderId }, 'could not release the hold of an unrecorded order');
    });
  }

  /**
   * Inserts the order; with a key, in the same statement, writes on it the answer or the order's
   * id, and inserts the order only if that write happened (the key still carries this claim):
   * `undefined` then. The key's update is the guard: a takeover committed before it, or while it
   * waits for the row, leaves it nothing to update (migration 005 builds the answer from values).
   */
  private async recordOrder(
    orderId: string,
    buyerId: string,
    allocation: Allocation,
    key: HeldKey | undefined,
    onKey: 'answer' | 'order',
  ): Promise<OrderRow | undefined> {
    const answer =
      onKey === 'answer'
        ? this.sql`status_code = 201, response = jsonb_build_object('order', order_fields_json(
            ${orderId}::uuid, 'held', ${buyerId}::uuid, ${allocation.productId}::uuid, ${allocation.quantity}::int,
            ${allocation.amountCents}::int8, ${allocation.expiresAt}::timestamptz, now())),`
        : this.sql``;
    const [row] = await this.sql<OrderRow[]>`
      with ${
        key === undefined
          ? this.sql``
          : this.sql`answered as (
              update idempotency_keys set ${answer} order_id = ${orderId}
               where buyer_id = ${key.buyerId} and key = ${key.key} and claim_id = ${key.claimId} and status_code is null
              returning 1),`
      }
      o as (
        insert into orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
        select ${orderId}::uuid, ${buyerId}::uuid, ${allocation.productId}::uuid, ${allocation.quantity}::int,
               ${allocation.amountCents}::int8, 'held', ${allocation.expiresAt}::timestamptz
         where ${key === undefined ? this.sql`true` : this.sql`exists (select 1 from answered)`}
        returning *)
      select * from o`;
    if (!row && key === undefined) throw new Error('insert returned no order');
    return row;
  }

  /** Debit → confirm → paid, for an order that is held; compensates when the confirm fails. */
  private async settle(row: OrderRow): Promise<Order> {
    const delay = this.options.paymentDelayMs ?? 0;
    if (delay > 0) await sleep(delay);
    const movement = { userId: row.buyer_id, orderId: row.id, amountCents: row.amount_cents };
    const debit = await this.options.users.debit(movement);
    if (!debit.ok) {
      throw new DomainError(
        'INSUFFICIENT_FUNDS',
        `the balance (${debit.balanceCents} cents) does not cover the order (${row.amount_cents} cents)`,
        { orderId: row.id, balanceCents: debit.balanceCents, amountCents: row.amount_cents },
      );
    }
    const confirmed = await this.options.inventory.confirm(row.id);
    if (confirmed.ok) return toOrder(await this.mark(row.id, 'paid'));
    await this.options.users.refund(movement);
    switch (confirmed.reason) {
      case 'CANCELLED':
        await this.mark(row.id, 'cancelled');
        throw new DomainError('ORDER_NOT_PAYABLE', 'the order was cancelled; the payment was refunded', {
          orderId: row.id,
          orderStatus: 'cancelled',
        });
      case 'EXPIRED':
      case 'NOT_FOUND':
        await this.options.inventory.expire(row.id);
        await this.mark(row.id, 'expired');
        throw holdExpired(row.id);
    }
  }

  /** Releases a held order's units at once and marks it cancelled (or reconciles it). */
  private async cancelHeld(row: OrderRow): Promise<OrderRow> {
    const released = await this.options.inventory.release(row.id);
    if (!released) return this.reconcile(row);
    // A pay that debited and died before its confirm: give the money back.
    await this.options.users.refund({ userId: row.buyer_id, orderId: row.id });
    return this.mark(row.id, 'cancelled');
  }

  /** Expires a held order whose expiry passed (or reconciles it, when inventory says otherwise). */
  private async expireHeld(row: OrderRow): Promise<OrderRow> {
    const released = await this.options.inventory.expire(row.id);
    if (!released) return this.reconcile(row);
    await this.options.users.refund({ userId: row.buyer_id, orderId: row.id });
    return this.mark(row.id, 'expired');
  }

  /** Brings a held order in line with its allocation, inventory's truth. */
  private async reconcile(row: OrderRow): Promise<OrderRow> {
    const allocation = await this.options.inventory.allocation(row.id);
    const status: OrderStatus = allocation?.status ?? 'expired';
    switch (status) {
      case 'held':
        return row;
      case 'paid':
        return this.mark(row.id, 'paid');
      case 'cancelled':
      case 'expired':
        await this.options.users.refund({ userId: row.buyer_id, orderId: row.id });
        return this.mark(row.id, status);
    }
  }

  /**
   * Moves a held order to `status` and returns the row as it now is. `paid` follows a confirmed
   * allocation, which is final, so it wins over whatever orders recorded meanwhile.
   */
  private async mark(orderId: string, status: Exclude<OrderStatus, 'held'>): Promise<OrderRow> {
    const [row] = await this.sql<OrderRow[]>`
      update orders set status = ${status}, updated_at = now()
       where id = ${orderId} and (status = 'held' or (${status} = 'paid' and status <> 'paid'))
      returning *`;
    if (row) {
      if (status === 'expired') this.expired += 1;
      return row;
    }
    const [current] = await this.sql<OrderRow[]>`select * from orders where id = ${orderId}`;
    if (!current) throw new Error(`order ${orderId} vanished`);
    return current;
  }

  private async find(buyerId: string, orderId: string): Promise<OrderRow> {
    const [row] = await this.sql<OrderRow[]>`select * from orders where id = ${orderId} and buyer_id = ${buyerId}`;
    if (!row) throw new DomainError('ORDER_NOT_FOUND', undefined, { orderId });
    return row;
  }
}

function holdExpired(orderId: string): DomainError {
  return new DomainError('HOLD_EXPIRED', 'the hold expired before it was paid; the unit is back in stock', {
    orderId,
    orderStatus: 'expired',
  });
}
