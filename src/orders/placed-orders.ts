/**
 * Orders the Redis gate granted, on their way through the pipeline: written here (the hold in
 * inventory's database first, then the order and its key in orders') by the consumer, or early by
 * a payment or cancel that arrived before it, or by an instant purchase that pays at once. Every
 * write is idempotent by order id, so whichever comes first writes and the rest change nothing.
 *
 * It also remembers, for a while, the orders this process placed, so a payment that arrives
 * before the consumer can write the order itself rather than wait.
 */
import type postgres from 'postgres';
import { canonicalId } from '../infra/canonical-id.js';
import type { Sql } from '../infra/database.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import type { PendingHold } from '../inventory/pending-holds.js';
import type { PlacedOrder } from '../pipeline/order-events.js';
import { DomainError } from '../infra/errors.js';
import { keyedOrderId, type IdempotencyKeys } from './idempotency.js';
import type { OrderStatus } from './orders.client.js';
import type { EventCounts } from './outbox.js';

/** How long a placed order is remembered here: longer than the consumer ever lags in practice. */
const REMEMBER_MS = 10 * 60_000;

export class PlacedOrders {
  /** Order id → the order as placed and when, until it is written or forgotten. */
  private readonly placed = new Map<string, { readonly order: PlacedOrder; readonly at: number }>();
  /** The same orders by buyer: order id → amount (what a buyer's spendable balance must leave out). */
  private readonly byBuyer = new Map<string, Map<string, number>>();

  constructor(
    private readonly sql: Sql,
    private readonly inventory: InventoryClient,
    private readonly keys: IdempotencyKeys,
    private readonly events: EventCounts,
  ) {}

  remember(order: PlacedOrder): void {
    this.placed.set(canonicalId(order.orderId, 'orderId'), { order, at: Date.now() });
    let mine = this.byBuyer.get(order.buyerId);
    if (mine === undefined) this.byBuyer.set(order.buyerId, (mine = new Map()));
    mine.set(order.orderId, order.amountCents);
    if (this.placed.size % 1_000 === 0) this.forgetOld();
  }

  /**
   * The buyer's orders this process placed and has not seen written yet, by id, with their
   * amounts: held as surely as those in the table, which the consumer may not have reached.
   */
  unwrittenOf(buyerId: string): ReadonlyMap<string, number> {
    return this.byBuyer.get(buyerId) ?? new Map<string, number>();
  }

  /**
   * Writes the order now if this process placed it for this buyer and it may not be written yet;
   * `false` if unknown here (another buyer's order is unknown to this buyer).
   */
  async writeIfPlacedHere(buyerId: string, orderId: string): Promise<boolean> {
    const entry = this.placed.get(canonicalId(orderId, 'orderId'));
    if (!entry || entry.order.buyerId !== buyerId) return false;
    try {
      await this.record([entry.order]);
    } catch (error) {
      if (!(error instanceof DomainError && error.status < 500)) throw error;
      // Refused by a check: it can never be written, by this process or the consumer. Given up
      // here as the consumer would give it up (voided, units back).
      await this.abandon([entry.order]);
    }
    return true;
  }

  async record(placed: readonly PlacedOrder[]): Promise<void> {
    let orders = placed;
    if (orders.length === 0) return;
    for (const order of orders) {
      canonicalId(order.orderId, 'orderId');
      canonicalId(order.productId, 'productId');
      canonicalId(order.buyerId, 'buyerId');
      assertKeyOfItsBuyer(order);
    }
    const reused = await this.keys.heldByAnotherRequest(orders.flatMap(keyOf));
    if (reused.size > 0) {
      // Granted under a key another request holds: never recorded (no second order for one key),
      // given up as the consumer gives up an order it cannot write (voided, units back).
      await this.abandon(orders.filter((order) => reused.has(order.orderId)));
      orders = orders.filter((order) => !reused.has(order.orderId));
    }
    const holds = await this.inventory.recordHolds(orders.map(pendingHold));
    const statusOf = new Map(holds.map((hold) => [hold.id, hold]));
    const rows = orders.flatMap((order) => {
      const hold = statusOf.get(order.orderId);
      // Voided by the reconciler before it got here: the buyer was never told "yes" for it.
      if (!hold || hold.voided) return [];
      return [
        {
          id: order.orderId,
          buyer_id: order.buyerId,
          product_id: order.productId,
          quantity: order.quantity,
          amount_cents: order.amountCents,
          status: hold.status,
          expires_at: order.expiresAt,
          created_at: order.placedAt,
          key: order.key?.key ?? null,
          claim_id: order.key?.claimId ?? null,
          scope: order.key?.scope ?? null,
          request_hash: order.key?.hash ?? null,
          answered: order.key?.answered ?? null,
        },
      ];
    });
    if (rows.length > 0) await this.insert(rows);
    for (const order of orders) this.forget(order.orderId);
  }

  /**
   * Orders, their outbox events and keys in one statement, so they commit together. A key is written with its order
   * (answered with it, or claimed for an instant purchase) unless it is taken: by this order
   * already (a redelivery), or by another request. One case overwrites: the same request's kept
   * refusal, which only a Redis loss can leave behind a later grant. The buyer was told "yes"
   * last, and the order exists, so the key answers with it from now on.
   */
  private async insert(rows: readonly Record<string, unknown>[]): Promise<void> {
    const made = await this.sql<{ kind: OrderStatus }[]>`
      with input as (
        select distinct on (id) * from jsonb_to_recordset(${this.sql.json(rows as postgres.JSONValue)}::jsonb)
          as t(id uuid, buyer_id uuid, product_id uuid, quantity integer, amount_cents bigint, status text,
               expires_at timestamptz, created_at timestamptz, key text, claim_id uuid, scope text,
               request_hash text, answered boolean)
         order by id),
      written as (
        insert into orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at, created_at)
        select id, buyer_id, product_id, quantity, amount_cents, status, expires_at, created_at from input order by id
        on conflict (id) do nothing
        returning id, status),
      events as (
        -- The outbox events of the orders actually inserted (none for one already there): held,
        -- then the status it already has when its hold ended before it got here.
        insert into order_events (order_id, kind)
        select w.id, e.kind from written w cross join lateral (values (1, 'held'), (2, w.status)) as e(step, kind)
         where e.step = 1 or w.status <> 'held'
         order by w.id, e.step
        returning kind),
      keyed as (
        select distinct on (buyer_id, key) * from input where key is not null order by buyer_id, key, id),
      keys_written as (
        insert into idempotency_keys as k (buyer_id, key, claim_id, scope, request_hash, status_code, response, order_id)
        select buyer_id, key, claim_id, scope, request_hash,
               case when answered then 201 end,
               case when answered then jsonb_build_object('ok', true, 'order',
                 order_fields_json(id, 'held', buyer_id, product_id, quantity, amount_cents, expires_at, created_at)) end,
               id
          from keyed order by buyer_id, key
        on conflict (buyer_id, key) do update
          set claim_id = excluded.claim_id, scope = excluded.scope, request_hash = excluded.request_hash,
              status_code = excluded.status_code, response = excluded.response, order_id = excluded.order_id,
              ended_at = null, created_at = now()
          where ${this.keys.takeable()}
             or (k.request_hash = excluded.request_hash and k.status_code is not null and k.order_id is null
                 and k.response ->> 'ok' = 'false'))
      select kind from events`;
    for (const { kind } of made) this.events.add(kind, 1);
  }

  /**
   * Gives up placed orders that will never be written (the consumer's last word on them): each one
   * with no order recorded is voided in inventory and its units go back where they were granted, so
   * a payment of it answers `HOLD_EXPIRED`. An order recorded meanwhile is left alone.
   */
  async abandon(orders: readonly PlacedOrder[]): Promise<void> {
    if (orders.length === 0) return;
    const ids = orders.map((order) => canonicalId(order.orderId, 'orderId'));
    const rows = await this.sql<{ id: string }[]>`select id from orders where id = any(${this.sql.array(ids)}::uuid[])`;
    const recorded = new Set(rows.map((row) => row.id));
    await this.inventory.abandonHolds(orders.filter((order) => !recorded.has(order.orderId)).map(pendingHold));
    for (const id of ids) this.forget(id);
  }

  private forgetOld(): void {
    const before = Date.now() - REMEMBER_MS;
    for (const [id, entry] of this.placed) if (entry.at < before) this.forget(id);
  }

  private forget(orderId: string): void {
    const entry = this.placed.get(orderId);
    if (entry === undefined) return;
    this.placed.delete(orderId);
    const mine = this.byBuyer.get(entry.order.buyerId);
    mine?.delete(orderId);
    if (mine?.size === 0) this.byBuyer.delete(entry.order.buyerId);
  }
}

/**
 * A keyed order's id is derived from its buyer, key and request (`keyedOrderId`), and its key is a
 * purchase's: a key row written with the order is then the buyer's own, for this very request.
 * Anything else is not what a checkout published, and is refused before anything is written.
 */
function assertKeyOfItsBuyer(order: PlacedOrder): void {
  const { key } = order;
  if (key === undefined) return;
  if (key.scope === 'purchase' && keyedOrderId({ buyerId: order.buyerId, key: key.key, hash: key.hash }) === order.orderId) return;
  throw new DomainError('VALIDATION_FAILED', `order ${order.orderId} carries an Idempotency-Key that is not its buyer's purchase key`, {
    errors: [{ field: 'key', message: "is not the buyer's key of this purchase" }],
  });
}

/** A keyed order's key, as `IdempotencyKeys.heldByAnotherRequest` takes it. */
function keyOf(order: PlacedOrder): { id: string; buyerId: string; key: string; hash: string }[] {
  return order.key === undefined ? [] : [{ id: order.orderId, buyerId: order.buyerId, key: order.key.key, hash: order.key.hash }];
}

/** A placed order as inventory records its hold. */
function pendingHold(order: PlacedOrder): PendingHold {
  return {
    id: order.orderId,
    productId: order.productId,
    buyerId: order.buyerId,
    quantity: order.quantity,
    amountCents: order.amountCents,
    expiresAt: order.expiresAt,
    madeAt: order.placedAt,
  };
}
