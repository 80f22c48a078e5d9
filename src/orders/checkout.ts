/**
 * The purchase: mint the order id → inventory reserves under it → record the order `held` (with
 * its `Idempotency-Key`, in one statement) → with `pay`, pay it at once. An allocation whose order
 * was never recorded (a crash in between) simply expires back to stock: no buyer was told "yes"
 * for it.
 *
 * @remarks The key is written after the reservation, with the purchase's outcome, never before:
 * a refused buyer (nearly every buyer of a drop) writes key and refusal in one statement, batched
 * with the others refused at that moment, and a winner writes key and order in one. A repeat that
 * finds its key answered meanwhile gives its unit straight back and gets the kept outcome.
 */
import type { Sql } from '../infra/database.js';
import { DomainError, isDefinitive } from '../infra/errors.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import type { Allocation } from '../inventory/inventory.types.js';
import type { HeldKey, IdempotencyKeys, KeptOutcome } from './idempotency.js';
import { toOrder, type OrderRow } from './order-rows.js';
import type { CheckoutOutcome, PurchaseRequest } from './orders.client.js';
import type { Payments } from './payments.js';
import { purchaseRefusal } from './refusals.js';

export interface CheckoutOptions {
  readonly sql: Sql;
  readonly inventory: InventoryClient;
  readonly keys: IdempotencyKeys;
  readonly payments: Payments;
  readonly newId: () => string;
  readonly log: { error(object: unknown, message: string): void };
}

export class Checkout {
  private readonly sql: Sql;

  constructor(private readonly options: CheckoutOptions) {
    this.sql = options.sql;
  }

  /** See `OrdersClient.purchase`; `held` is the request's key, held by the caller in this process. */
  async purchase(buyerId: string, request: PurchaseRequest, held: HeldKey | undefined): Promise<CheckoutOutcome> {
    const orderId = this.options.newId();
    const reserved = await this.options.inventory.reserve({
      allocationId: orderId,
      productId: request.productId,
      buyerId,
      quantity: request.quantity,
    });
    if (!reserved.ok) {
      const refused: KeptOutcome = { ok: false, refusal: purchaseRefusal(reserved, request.productId) };
      return held !== undefined && isDefinitive(refused.refusal) ? this.options.keys.answerFirst(held, refused) : refused;
    }
    let row: OrderRow | undefined;
    try {
      row = await this.record(orderId, buyerId, reserved.allocation, held, request.pay === true);
    } catch (error) {
      // The buyer is told "no", so the unit must not stay held: give it back now rather than at expiry.
      await this.releaseUnrecorded(orderId);
      throw error;
    }
    if (row === undefined) {
      // Nothing recorded: the key has an outcome already (a repeat of this request ran elsewhere).
      await this.releaseUnrecorded(orderId);
      if (held === undefined) throw new Error('an order without a key was not recorded');
      return this.options.keys.outcomeOf(held);
    }
    if (request.pay !== true) return { ok: true, order: toOrder(row) };
    return this.payAtOnce(row, held);
  }

  /**
   * Instant mode: pays the order just recorded. It answers "no" as a whole: the unit must not
   * stay held for a buyer who was refused. But a fault after the confirm (marking the order)
   * leaves it paid: then the purchase stands, and saying "no" would let a retry with the same key
   * buy and pay again.
   */
  private async payAtOnce(row: OrderRow, held: HeldKey | undefined): Promise<CheckoutOutcome> {
    let outcome: KeptOutcome;
    try {
      outcome = { ok: true, order: await this.options.payments.settle(row) };
    } catch (error) {
      const after = await this.options.payments.cancelHeld(row).catch((cancelError: unknown) => {
        this.options.log.error({ err: cancelError, orderId: row.id }, 'could not release the hold of an unpaid instant purchase');
        return undefined;
      });
      if (after?.status === 'paid') outcome = { ok: true, order: toOrder(after) };
      else if (error instanceof DomainError && error.status < 500) outcome = { ok: false, refusal: error.toRefusal() };
      else {
        if (held !== undefined) await this.abandon(held);
        throw error;
      }
    }
    if (held === undefined) return outcome;
    if (!outcome.ok && !isDefinitive(outcome.refusal)) {
      await this.abandon(held);
      return outcome;
    }
    // Made or refused for good: a failure to keep the outcome must not turn it into an error (the
    // key stays claimed with its order, and that order is what a retry gets).
    await this.options.keys.complete(held, outcome).catch((completeError: unknown) => {
      this.options.log.error({ err: completeError, orderId: row.id }, 'could not keep the outcome of an instant purchase');
    });
    return outcome;
  }

  /**
   * Inserts the order; with a key, in the same statement, writes the key (answered with the order,
   * or claimed with its id when it is paid next) and inserts the order only if the key was written:
   * `undefined` then. Order and key commit together: a crash after this cannot leave a key that a
   * retry would take over and buy a second time.
   */
  private async record(
    orderId: string,
    buyerId: string,
    allocation: Allocation,
    held: HeldKey | undefined,
    paysNext: boolean,
  ): Promise<OrderRow | undefined> {
    const { productId, quantity, amountCents, expiresAt } = allocation;
    const answer = paysNext
      ? undefined
      : this.sql`order_fields_json(${orderId}::uuid, 'held', ${buyerId}::uuid, ${productId}::uuid, ${quantity}::int,
                                   ${amountCents}::int8, ${expiresAt}::timestamptz, now())`;
    const [row] = await this.sql<OrderRow[]>`
      with ${held === undefined ? this.sql`` : this.options.keys.keyWrite(held, orderId, answer)}
      o as (
        insert into orders (id, buyer_id, product_id, quantity, amount_cents, status, expires_at)
        select ${orderId}::uuid, ${buyerId}::uuid, ${productId}::uuid, ${quantity}::int,
               ${amountCents}::int8, 'held', ${expiresAt}::timestamptz
         where ${held === undefined ? this.sql`true` : this.sql`exists (select 1 from key_written)`}
        returning *)
      select * from o`;
    return row;
  }

  private async releaseUnrecorded(orderId: string): Promise<void> {
    // If this fails too, the sweeper returns the unit when its hold expires.
    await this.options.inventory.release(orderId).catch((releaseError: unknown) => {
      this.options.log.error({ err: releaseError, orderId }, 'could not release the hold of an unrecorded order');
    });
  }

  private async abandon(held: HeldKey): Promise<void> {
    await this.options.keys.abandon(held).catch((abandonError: unknown) => {
      this.options.log.error({ err: abandonError }, 'could not release an idempotency key');
    });
  }
}
