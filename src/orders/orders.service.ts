/**
 * The orders module: the checkout (`checkout.ts`), what happens to an order after it
 * (`payments.ts`), the `Idempotency-Key`s of both (`idempotency.ts`), the order history and the
 * outbox of order changes (`outbox.ts`, relayed by `outbox-relay.ts`). It is also the in-process
 * `OrdersClient`.
 */
import type { AuditOrdersPage, AuditPage } from '../audit/audit.types.js';
import { canonicalId } from '../infra/canonical-id.js';
import type { Sql } from '../infra/database.js';
import { DomainError, isDefinitive } from '../infra/errors.js';
import { onStore, outcomeUnknown, storeFault, storeUnavailable } from '../infra/store-errors.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import type { UsersClient } from '../users/users.client.js';
import { Checkout } from './checkout.js';
import { IdempotencyKeys, keyedOrderId, type HeldKey } from './idempotency.js';
import { toOrder, type OrderRow } from './order-rows.js';
import type { CheckoutOutcome, Order, OrderEventsPage, OrdersClient, OrdersPage, OrderStatus, PurchaseRequest } from './orders.client.js';
import { Outbox } from './outbox.js';
import { EndedDebits, type EndedDebitsSweep } from './ended-debits.js';
import { OwedRefunds, type RefundRetry } from './owed-refunds.js';
import { Payments, type ExpirySweep } from './payments.js';
import { PlacedOrders } from './placed-orders.js';
import type { PlacedOrder } from '../pipeline/order-events.js';
import type { PublishOutcome } from '../pipeline/publisher.js';

export interface OrdersOptions {
  readonly sql: Sql;
  readonly inventory: InventoryClient;
  readonly users: UsersClient;
  readonly newId: () => string;
  /** Simulated payment-gateway latency inside pay, outside any stock step. */
  readonly paymentDelayMs?: number;
  /** How long a purchase or payment waits for the stores before it answers `OUTCOME_UNKNOWN`. */
  readonly storeDeadlineMs: number;
  /** How long an `Idempotency-Key` keeps its first definitive outcome (`KEY_RETENTION_SECONDS`). */
  readonly keyRetentionSeconds?: number;
  /** Publishes a grant made outside the database to the order pipeline (set when a broker is configured). */
  readonly publish?: (order: PlacedOrder) => Promise<PublishOutcome>;
  /** How long a payment waits for an order another process placed through the pipeline. */
  readonly pipelineWaitMs?: number;
  readonly log: { error(object: unknown, message: string): void };
}

export class OrdersService implements OrdersClient {
  readonly keys: IdempotencyKeys;
  readonly placed: PlacedOrders;
  readonly outbox: Outbox;
  /** Refunds an expiry could not make (users unreachable), made by later sweeps. */
  readonly owedRefunds: OwedRefunds;
  /** Debits of ended orders that were never refunded (a payment that debited late and never came back). */
  readonly endedDebits: EndedDebits;
  private readonly sql: Sql;
  private readonly payments: Payments;
  private readonly checkout: Checkout;

  constructor(private readonly options: OrdersOptions) {
    this.sql = options.sql;
    this.keys = new IdempotencyKeys(options.sql, options.storeDeadlineMs, options.keyRetentionSeconds);
    this.outbox = new Outbox(options.sql);
    const events = this.outbox.counts;
    this.placed = new PlacedOrders(options.sql, options.inventory, this.keys, events);
    this.owedRefunds = new OwedRefunds(options.sql, options.users);
    // A payment that read an order held debits within its own run, which the store deadline
    // bounds (its answer) and the pools' timeouts end: twice the deadline is long past it.
    this.endedDebits = new EndedDebits(options.sql, options.users, this.owedRefunds, 2 * options.storeDeadlineMs);
    // With the pipeline on, a payment waits up to a confirm timeout's worth for an order another
    // process placed, once the gate says it holds it for the buyer; without the pipeline, an order
    // that is not there is not coming.
    this.payments = new Payments({
      ...options,
      placed: this.placed,
      events,
      owed: this.owedRefunds,
      pipelineWaitMs: options.publish === undefined ? 0 : options.pipelineWaitMs ?? 0,
    });
    this.checkout = new Checkout({ ...options, keys: this.keys, payments: this.payments, placed: this.placed, publish: options.publish, events });
  }

  /** Held orders that have become `expired` since start (any path), for the metrics. */
  get expiredTotal(): number {
    return this.payments.expiredTotal;
  }

  async purchase(buyerId: string, request: PurchaseRequest, idempotencyKey?: string): Promise<CheckoutOutcome> {
    // The key's scope and hash, the order id derived from them and every store key below are
    // spelled from these ids: one spelling each, or a second spelling would be a second request.
    canonicalId(buyerId, 'buyerId');
    canonicalId(request.productId, 'productId');
    if (idempotencyKey === undefined) {
      const orderId = this.options.newId();
      return this.withinDeadline(orderId, () => this.checkout.purchase(buyerId, orderId, request, undefined));
    }
    const held = this.keys.hold(buyerId, idempotencyKey, 'purchase', request);
    if ('ok' in held) return held;
    const orderId = keyedOrderId(held);
    // The key is let go when the work ends, not when the deadline answers for it: a repeat in this
    // process meanwhile is told the first is still running.
    const work = this.checkout.purchase(buyerId, orderId, request, held).finally(() => this.keys.letGo(held));
    return this.withinDeadline(orderId, () => work);
  }

  async pay(buyerId: string, orderId: string, idempotencyKey?: string): Promise<CheckoutOutcome> {
    canonicalId(buyerId, 'buyerId');
    // The key's scope names the order (`pay:<order id>`): one spelling, one scope.
    canonicalId(orderId, 'orderId');
    if (idempotencyKey === undefined) return this.withinDeadline(orderId, () => this.payOnce(buyerId, orderId));
    // A payment has no body: the order in its scope is what makes two of them "the same".
    const held = this.keys.hold(buyerId, idempotencyKey, `pay:${orderId}`, null);
    if ('ok' in held) return held;
    const work = this.payClaimed(buyerId, orderId, held).finally(() => this.keys.letGo(held));
    return this.withinDeadline(orderId, () => work);
  }

  /**
   * Runs a checkout step with a deadline: a store that does not answer in time (a connection
   * hung, a server restarting) turns into `OUTCOME_UNKNOWN` for the buyer after
   * `storeDeadlineMs`, never a hang, while the work goes on and lands (or not) by itself. A store
   * failure of orders' own database that no step named becomes the answer that names it.
   */
  private async withinDeadline(orderId: string, work: () => Promise<CheckoutOutcome>): Promise<CheckoutOutcome> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<CheckoutOutcome>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, refusal: outcomeUnknown('stores', orderId).toRefusal() }), this.options.storeDeadlineMs);
    });
    const running = work().catch((error: unknown): CheckoutOutcome => {
      const fault = storeFault(error);
      if (fault === undefined) throw error;
      const named = fault === 'unavailable' ? storeUnavailable('orders') : outcomeUnknown('orders', orderId);
      return { ok: false, refusal: named.toRefusal() };
    });
    try {
      return await Promise.race([running, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A payment claims its key before it debits anything, then keeps its outcome under it. */
  private async payClaimed(buyerId: string, orderId: string, held: HeldKey): Promise<CheckoutOutcome> {
    const claim = await this.keys.claim(held);
    if (!claim.claimed) return claim.outcome;
    let outcome: CheckoutOutcome;
    try {
      outcome = await this.payOnce(buyerId, orderId);
      // This key's earlier attempt ended unanswered (a store failed around it) and paid after all:
      // its payment is this one's outcome, not a second payment refused.
      if (claim.resumed && !outcome.ok && outcome.refusal.code === 'ORDER_ALREADY_PAID') {
        outcome = { ok: true, order: await this.getOrder(buyerId, orderId) };
      }
    } catch (error) {
      await this.abandon(held);
      throw error;
    }
    if (outcome.ok || isDefinitive(outcome.refusal)) {
      // The buyer still gets the outcome if keeping it fails; the key then waits out its claim.
      await this.keys.complete(held, outcome).catch((completeError: unknown) => {
        this.options.log.error({ err: completeError, orderId }, 'could not keep the outcome of a payment');
      });
    } else {
      await this.abandon(held);
    }
    return outcome;
  }

  /** Drops a claim whose outcome is not definitive; if that fails, the claim goes stale and may be taken over. */
  private async abandon(held: HeldKey): Promise<void> {
    await this.keys.abandon(held).catch((abandonError: unknown) => {
      this.options.log.error({ err: abandonError }, 'could not release an idempotency key');
    });
  }

  private async payOnce(buyerId: string, orderId: string): Promise<CheckoutOutcome> {
    try {
      return { ok: true, order: await this.payments.pay(buyerId, orderId) };
    } catch (error) {
      // A refusal, or a store failure a module named (both answer the buyer; faults stay faults).
      if (error instanceof DomainError && (error.status < 500 || error.retryAfterSeconds !== undefined)) {
        return { ok: false, refusal: error.toRefusal() };
      }
      throw error;
    }
  }

  cancel(buyerId: string, orderId: string): Promise<Order> {
    return onStore('orders', () => this.payments.cancel(buyerId, orderId), orderId);
  }

  /** Expires held orders past their expiry (see `Payments.sweepExpired`). */
  sweepExpired(batchSize?: number): Promise<ExpirySweep> {
    return this.payments.sweepExpired(batchSize);
  }

  /** Refunds the debits of recently ended orders that were never refunded (see `EndedDebits`). */
  refundEndedDebits(): Promise<EndedDebitsSweep> {
    return this.endedDebits.sweep();
  }

  /** Makes the refunds owed (see `OwedRefunds.retry`). */
  retryOwedRefunds(batchSize?: number): Promise<RefundRetry> {
    return this.owedRefunds.retry(batchSize);
  }

  async getOrder(buyerId: string, orderId: string): Promise<Order> {
    const [row] = await this.sql<OrderRow[]>`select * from orders where id = ${orderId} and buyer_id = ${buyerId}`;
    if (!row) throw new DomainError('ORDER_NOT_FOUND', undefined, { orderId });
    return toOrder(row);
  }

  async listForBuyer(buyerId: string, limit = 100): Promise<Order[]> {
    const rows = await this.sql<OrderRow[]>`
      select * from orders where buyer_id = ${buyerId} order by created_at desc, id limit ${limit}`;
    return rows.map(toOrder);
  }

  async listForProduct(productId: string, page: { limit: number; after?: string; status?: OrderStatus }): Promise<OrdersPage> {
    await this.options.inventory.getProduct(productId);
    const status = page.status ?? null;
    const after = page.after ?? null;
    if (after !== null) {
      const [found] = await this.sql`select 1 from orders where id = ${after} and product_id = ${productId}`;
      if (!found) {
        throw new DomainError('VALIDATION_FAILED', 'after must be the id of an order of this product', {
          errors: [{ field: 'querystring.after', message: 'is not an order of this product' }],
        });
      }
    }
    // Keyset paging down the product's index: a page reads its rows and one more (is there a
    // next page?), never the rows before it nor a count of all of them. The cursor's instant is
    // read in the statement, at PostgreSQL's microseconds (a Date would round it to milliseconds).
    // `created_at <=` is what starts the index scan at the cursor, however deep it is.
    const rows = await this.sql<OrderRow[]>`
      select * from orders
       where product_id = ${productId} and (${status}::text is null or status = ${status}::text)
         ${after === null ? this.sql`` : this.sql`
         and created_at <= (select c.created_at from orders c where c.id = ${after})
         and (created_at, id) < (select c.created_at, c.id from orders c where c.id = ${after})`}
       order by created_at desc, id desc limit ${page.limit + 1}`;
    const shown = rows.slice(0, page.limit);
    return { orders: shown.map(toOrder), nextAfter: rows.length > page.limit ? shown.at(-1)?.id ?? null : null };
  }

  recordPlaced(orders: readonly PlacedOrder[]): Promise<void> {
    return onStore('orders', () => this.placed.record(orders));
  }

  abandonPlaced(orders: readonly PlacedOrder[]): Promise<void> {
    return onStore('orders', () => this.placed.abandon(orders));
  }

  async missing(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const rows = await this.sql<{ id: string }[]>`select id from orders where id = any(${this.sql.array([...ids])}::uuid[])`;
    const found = new Set(rows.map((row) => row.id));
    return ids.filter((id) => !found.has(id));
  }

  events(page: { after: number; limit: number }): Promise<OrderEventsPage> {
    return onStore('orders', () => this.outbox.page(page.after, page.limit), undefined, false);
  }

  async auditOrders(productId: string, page: AuditPage): Promise<AuditOrdersPage> {
    // Keyset paging along the product's index (product_id, created_at), as the admin's list does.
    const rows = await this.sql<{ id: string; buyer_id: string; quantity: number; amount_cents: number; status: OrderStatus; changed_at: Date }[]>`
      select id, buyer_id, quantity, amount_cents, status, greatest(created_at, updated_at) as changed_at from orders
       where product_id = ${productId}
         ${page.after === null ? this.sql`` : this.sql`
         and created_at >= (select c.created_at from orders c where c.id = ${page.after})
         and (created_at, id) > (select c.created_at, c.id from orders c where c.id = ${page.after})`}
       order by created_at, id limit ${page.limit + 1}`;
    const shown = rows.slice(0, page.limit);
    return {
      orders: shown.map((row) => ({
        id: row.id,
        buyerId: row.buyer_id,
        quantity: row.quantity,
        amountCents: Number(row.amount_cents),
        status: row.status,
        changedAt: row.changed_at.toISOString(),
      })),
      nextAfter: rows.length > page.limit ? shown.at(-1)?.id ?? null : null,
    };
  }
}
