/**
 * The purchase: inventory reserves under the order id → record the order `held` (with its
 * `Idempotency-Key`, in one statement) → with `pay`, pay it at once. An allocation whose order was
 * never recorded (a crash in between) simply expires back to stock: no buyer was told "yes" for it.
 *
 * @remarks The key is written to PostgreSQL after the reservation, with the purchase's outcome,
 * never before: a refused buyer (nearly every buyer of a drop) writes key and refusal in one
 * statement, batched with the others refused at that moment, and a winner writes key and order in
 * one. A grant of the Redis gate is answered before its order reaches PostgreSQL, so the gate binds
 * the key to the request itself before it reserves (`KEY_REUSED` for another request). A keyed
 * purchase's order id is derived from its key (`keyedOrderId`), so every attempt with the key
 * reserves and records under the same id: an attempt that failed around a step whose outcome is
 * unknown is finished, or found finished, by the retry, never doubled.
 */
import type { Sql } from '../infra/database.js';
import { DomainError, isDefinitive, refusal, type Refusal } from '../infra/errors.js';
import { outcomeUnknown, storeFault, storeUnavailable } from '../infra/store-errors.js';
import type { InventoryClient } from '../inventory/inventory.client.js';
import type { Allocation, ReserveOutcome } from '../inventory/inventory.types.js';
import type { HeldKey, IdempotencyKeys, KeptOutcome } from './idempotency.js';
import { toOrder, type OrderRow } from './order-rows.js';
import type { CheckoutOutcome, Order, PurchaseRequest } from './orders.client.js';
import type { PlacedOrders } from './placed-orders.js';
import { OrderRecords, type Recorded } from './order-records.js';
import type { PlacedOrder } from '../pipeline/order-events.js';
import type { PublishOutcome } from '../pipeline/publisher.js';
import type { EventCounts } from './outbox.js';
import type { Payments } from './payments.js';
import { purchaseRefusal } from './refusals.js';
import type { UsersClient } from '../users/users.client.js';

export interface CheckoutOptions {
  readonly sql: Sql;
  readonly inventory: InventoryClient;
  /** The buyer's balance, for a product that requires funds. */
  readonly users: UsersClient;
  readonly keys: IdempotencyKeys;
  readonly payments: Payments;
  readonly placed: PlacedOrders;
  /** Publishes a grant made outside the database (redis-lua); absent when no broker is configured. */
  readonly publish: ((order: PlacedOrder) => Promise<PublishOutcome>) | undefined;
  readonly log: { error(object: unknown, message: string): void };
  /** Counts the outbox events the checkout's writes make. */
  readonly events: EventCounts;
}

/** The store name buyers see when the broker fails. */
const BROKER = 'broker';


const refused = (reason: Refusal): KeptOutcome => ({ ok: false, refusal: reason });

/**
 * A store failure (a module's `STORE_UNAVAILABLE` or `OUTCOME_UNKNOWN`), or a line that is full
 * (`OVERLOADED`: nothing done), as the buyer's answer.
 */
function storeRefusal(error: unknown): KeptOutcome | undefined {
  if (error instanceof DomainError && (error.code === 'STORE_UNAVAILABLE' || error.code === 'OUTCOME_UNKNOWN' || error.code === 'OVERLOADED')) {
    return refused(error.toRefusal());
  }
  return undefined;
}

/** How long a reading of whether key rows from before a gate's `bindingsSince` remain is used. */
const KEYS_BEFORE_READ_MS = 10_000;

/** Products remembered as requiring funds; the set is emptied when it reaches this size. */
const FUNDS_PRODUCTS_REMEMBERED = 10_000;

export class Checkout {
  private readonly sql: Sql;
  private readonly records: OrderRecords;
  /**
   * Products inventory asked a buyer's spendable balance for (`FUNDS_UNKNOWN`): their purchases
   * read it before they reserve, the others never do. A product whose rule was lifted since is
   * only asked with a figure it ignores.
   */
  private readonly fundsProducts = new Set<string>();
  /** Whether key rows from before the gate's `bindingsSince` are within the retention, as last read. */
  private keysBefore: { readonly since: number; readonly at: number; readonly found: Promise<boolean> } | undefined;

  constructor(private readonly options: CheckoutOptions) {
    this.sql = options.sql;
    this.records = new OrderRecords(options.sql, options.keys, options.events);
  }

  /**
   * See `OrdersClient.purchase`. `orderId` is minted by the caller (derived from the key when
   * there is one); `held` is the request's key, held by the caller in this process.
   */
  async purchase(buyerId: string, orderId: string, request: PurchaseRequest, held: HeldKey | undefined): Promise<CheckoutOutcome> {
    let reserved: ReserveOutcome;
    try {
      reserved = await this.reserve(orderId, buyerId, request, held);
    } catch (error) {
      // Inventory names its store's failure; an unknown reservation stays until it expires.
      const answer = storeRefusal(error);
      if (answer === undefined) throw error;
      return answer;
    }
    if (!reserved.ok) {
      const reason = purchaseRefusal(reserved, request.productId);
      // A key bound to another request in the gate is not this request's to answer: its own
      // request's order may still be on its way to the key's row. Funds that fall short are not
      // the request's answer for good either: a buyer who tops up retries with the same key.
      if (reserved.reason === 'KEY_REUSED' && held !== undefined) {
        // A gate that lost the key's binding may have bound it to another request since: the
        // key's row still answers this one, if it is this request's.
        return (await this.options.keys.keptForThisRequest(held)) ?? refused(reason);
      }
      const keepIt = held !== undefined && isDefinitive(reason) && reserved.reason !== 'INSUFFICIENT_FUNDS';
      return keepIt ? this.keep(held, refused(reason)) : refused(reason);
    }
    const { allocation } = reserved;
    if (allocation.status === 'expired' || allocation.status === 'cancelled') return this.lapsed(orderId, buyerId, held);
    if (reserved.pending === true) {
      if (held !== undefined && reserved.keyBoundSince !== undefined && (await this.keyIsAnotherRequests(allocation, held, reserved.keyBoundSince))) {
        await this.giveUpUnpublished(allocation);
        return this.options.keys.outcomeOf(held);
      }
      return this.placeThroughPipeline(allocation, held, request.pay === true, reserved.again === true);
    }
    let recorded: Recorded;
    try {
      recorded = await this.record(orderId, buyerId, allocation, held, request.pay === true);
    } catch (error) {
      const fault = storeFault(error);
      // The order (and its key) may have committed: the unit stays, and a retry finds out.
      if (fault === 'unknown') return refused(outcomeUnknown('orders', orderId).toRefusal());
      // Nothing recorded. A keyed purchase keeps its unit for the retry, which reserves under the
      // same id and records it (else it expires); any other goes back now rather than at expiry.
      if (fault === 'unavailable' && held !== undefined) return refused(storeUnavailable('orders').toRefusal());
      await this.releaseUnrecorded(orderId);
      if (fault === 'unavailable') return refused(storeUnavailable('orders').toRefusal());
      throw error;
    }
    switch (recorded.kind) {
      case 'key-taken':
        return this.keyTaken(orderId, held);
      case 'exists':
        // An earlier attempt with this key recorded the order: that order is the outcome (and is
        // paid now, in instant mode, if that attempt stopped short of it).
        if (request.pay === true && recorded.row.status === 'held') return this.payAtOnce(recorded.row, held, 'keep');
        return this.replayed(held, { ok: true, order: toOrder(recorded.row) });
      case 'recorded':
        if (request.pay !== true) return { ok: true, order: toOrder(recorded.row) };
        return this.payAtOnce(recorded.row, held, 'complete');
    }
  }

  /**
   * Whether the key, bound by this request in a gate that holds its bindings only since `since`,
   * is another request's in PostgreSQL (an earlier use whose binding a Redis restarted empty lost).
   * Asked per purchase only while key rows from before `since` are within the retention; whether
   * there are is read once per {@link KEYS_BEFORE_READ_MS}.
   */
  private async keyIsAnotherRequests(allocation: Allocation, held: HeldKey, since: number): Promise<boolean> {
    let before = this.keysBefore;
    if (before === undefined || before.since !== since || Date.now() - before.at >= KEYS_BEFORE_READ_MS) {
      const found = this.options.keys.keptFromBefore(since);
      this.keysBefore = before = { since, at: Date.now(), found };
      found.catch(() => {
        if (this.keysBefore?.found === found) this.keysBefore = undefined;
      });
    }
    if (!(await before.found)) return false;
    const taken = await this.options.keys.heldByAnotherRequest([{ id: allocation.id, buyerId: held.buyerId, key: held.key, hash: held.hash }]);
    return taken.size > 0;
  }

  /**
   * Asks inventory for the units; for a product that requires funds, with the buyer's spendable
   * balance (asked for again with it when inventory says it needs it, which changed nothing).
   */
  private async reserve(orderId: string, buyerId: string, request: PurchaseRequest, held: HeldKey | undefined): Promise<ReserveOutcome> {
    const ask = async (withFunds: boolean): Promise<ReserveOutcome> =>
      this.options.inventory.reserve({
        allocationId: orderId,
        productId: request.productId,
        buyerId,
        quantity: request.quantity,
        ...(held === undefined ? {} : { idempotencyKey: held.key }),
        ...(withFunds ? { spendableCents: await this.spendable(buyerId, orderId) } : {}),
      });
    const known = this.fundsProducts.has(request.productId);
    const reserved = await ask(known);
    if (known || reserved.ok || reserved.reason !== 'FUNDS_UNKNOWN') return reserved;
    if (this.fundsProducts.size >= FUNDS_PRODUCTS_REMEMBERED) this.fundsProducts.clear();
    this.fundsProducts.add(request.productId);
    return ask(true);
  }

  /**
   * What the buyer can still pay for: their balance less their held orders (this one aside, if a
   * retry of it was recorded): those in the table, and those this process placed through the
   * pipeline that the consumer has not written yet. Read at one moment per store, so two purchases
   * of one buyer racing (or placed through another process a moment ago) may both pass; the
   * per-buyer limits still bound them.
   */
  private async spendable(buyerId: string, orderId: string): Promise<number> {
    // Taken before the table is read: an order written meanwhile is then in both, counted once.
    const held = new Map(this.options.placed.unwrittenOf(buyerId));
    const [user, rows] = await Promise.all([
      this.options.users.getUser(buyerId),
      this.sql<{ id: string; amount_cents: number }[]>`
        select id, amount_cents from orders where buyer_id = ${buyerId} and status = 'held'`,
    ]);
    for (const row of rows) held.set(row.id, row.amount_cents);
    held.delete(orderId);
    let cents = 0;
    for (const amount of held.values()) cents += amount;
    return user.balanceCents - cents;
  }

  /**
   * A grant made outside the database (redis-lua): published to the order pipeline, and answered
   * `201` only once the broker confirms it (then it is durable: the consumer writes it). A retry of
   * a grant (`again`) whose order is written already goes on from that order.
   *
   * A refused publish sent nothing: an unkeyed purchase's unit goes back now (no one else knows its
   * id); a keyed one keeps it for the retry, which publishes under the same id. A publish with no
   * confirm in time may still land: the hold stays, the buyer hears `OUTCOME_UNKNOWN` with the order
   * id, and the reconciler returns the unit only after voiding the id in PostgreSQL.
   */
  private async placeThroughPipeline(allocation: Allocation, held: HeldKey | undefined, pay: boolean, again: boolean): Promise<CheckoutOutcome> {
    if (again) {
      const [row] = await this.sql<OrderRow[]>`select * from orders where id = ${allocation.id}`;
      if (row) return pay && row.status === 'held' ? this.payAtOnce(row, held, 'keep') : this.replayed(held, { ok: true, order: toOrder(row) });
    }
    const publish = this.options.publish;
    if (publish === undefined) throw new Error('a pending reservation needs the order pipeline, which this server was started without');
    const placed: PlacedOrder = {
      orderId: allocation.id,
      productId: allocation.productId,
      buyerId: allocation.buyerId,
      quantity: allocation.quantity,
      amountCents: allocation.amountCents,
      expiresAt: allocation.expiresAt,
      placedAt: new Date().toISOString(),
      ...(held === undefined
        ? {}
        : { key: { key: held.key, claimId: held.claimId, scope: held.scope, hash: held.hash, answered: !pay } }),
    };
    const published = await publish(placed);
    if (published === 'refused') {
      if (held === undefined) await this.withdraw(allocation);
      return refused(storeUnavailable(BROKER).toRefusal());
    }
    // Published, or maybe: a payment of it that arrives before the consumer may write it.
    this.options.placed.remember(placed);
    if (published === 'unknown') return refused(outcomeUnknown(BROKER, allocation.id).toRefusal());
    const order: Order = {
      id: placed.orderId,
      status: 'held',
      buyerId: placed.buyerId,
      productId: placed.productId,
      quantity: placed.quantity,
      amountCents: placed.amountCents,
      expiresAt: placed.expiresAt,
      createdAt: placed.placedAt,
    };
    if (!pay) return { ok: true, order };
    // Instant mode pays now, so the order is written now (the consumer's write then changes nothing).
    try {
      await this.options.placed.record([placed]);
    } catch (error) {
      if (storeFault(error) === undefined && storeRefusal(error) === undefined) throw error;
      return refused(outcomeUnknown('orders', placed.orderId).toRefusal());
    }
    const [row] = await this.sql<OrderRow[]>`select * from orders where id = ${placed.orderId}`;
    if (!row && held !== undefined) {
      // Not written because another request holds the key (PlacedOrders gave it up): reused.
      const kept = await this.options.keys.outcomeOf(held);
      if (!kept.ok && kept.refusal.code === 'IDEMPOTENCY_KEY_REUSED') return kept;
    }
    if (!row) return refused(refusal('HOLD_EXPIRED', 'the hold was given up before it was recorded; buy again with a new key', { orderId: placed.orderId, orderStatus: 'expired' }));
    if (held !== undefined) {
      const other = await this.keyOfAnotherRequest(row, held);
      if (other !== undefined) return other;
    }
    return this.payAtOnce(row, held, 'complete');
  }

  /**
   * The gate binds a key to its request before it reserves, but a Redis that lost its bindings
   * (restarted empty, flushed) binds the key again for whatever request comes: the key's row in
   * PostgreSQL, written with the order just now unless another request has it, is what still
   * knows. An instant purchase under another request's key pays nothing: its order is cancelled
   * (its unit back) and it is refused as reused, as on every other strategy.
   */
  private async keyOfAnotherRequest(row: OrderRow, held: HeldKey): Promise<CheckoutOutcome | undefined> {
    const kept = await this.options.keys.outcomeOf(held);
    if (kept.ok || kept.refusal.code !== 'IDEMPOTENCY_KEY_REUSED') return undefined;
    await this.options.payments.cancelHeld(row).catch((cancelError: unknown) => {
      this.options.log.error({ err: cancelError, orderId: row.id }, 'could not cancel the order of a reused Idempotency-Key');
    });
    return kept;
  }

  /**
   * A grant that will never be published: given up as the consumer gives up an order it cannot
   * write (voided, so nothing can record it later; its units back). If that fails too, the
   * reconciler voids it and returns the units once the confirm timeout has passed.
   */
  private async giveUpUnpublished(allocation: Allocation): Promise<void> {
    const hold = {
      id: allocation.id,
      productId: allocation.productId,
      buyerId: allocation.buyerId,
      quantity: allocation.quantity,
      amountCents: allocation.amountCents,
      expiresAt: allocation.expiresAt,
      madeAt: new Date().toISOString(),
    };
    await this.options.inventory.abandonHolds([hold]).catch((error: unknown) => {
      this.options.log.error({ err: error, orderId: allocation.id }, 'could not give up the hold of a reused Idempotency-Key');
    });
  }

  private async withdraw(allocation: Allocation): Promise<void> {
    // If this fails too, the reconciler returns the unit once the confirm timeout has passed.
    await this.options.inventory.withdraw({ id: allocation.id, productId: allocation.productId }).catch((error: unknown) => {
      this.options.log.error({ err: error, orderId: allocation.id }, 'could not give back the unit of a refused publish');
    });
  }

  /**
   * The reservation under this id was made by an earlier attempt with the key and has lapsed
   * (expired or cancelled). If that attempt recorded its order, the order is the outcome; if not,
   * the purchase under this key is over: a new key buys again.
   */
  private async lapsed(orderId: string, buyerId: string, held: HeldKey | undefined): Promise<CheckoutOutcome> {
    const [row] = await this.sql<OrderRow[]>`select * from orders where id = ${orderId} and buyer_id = ${buyerId}`;
    if (row) return this.replayed(held, { ok: true, order: toOrder(row) });
    const answer = refused(
      refusal('HOLD_EXPIRED', 'an earlier attempt with this Idempotency-Key reserved a unit whose hold lapsed; buy again with a new key', {
        orderId,
        orderStatus: 'expired',
      }),
    );
    return held === undefined ? answer : this.keep(held, answer);
  }

  /**
   * The key has an outcome already, or is being answered (a repeat of this request ran, or runs,
   * elsewhere). Every attempt with the key reserves under the same id, so the unit may be that
   * other attempt's too: it goes back only when the kept outcome is a refusal, which recorded no
   * order. Kept as an order, or still in progress (an instant purchase paying), it stays; if no
   * order ever has it, it comes back at expiry.
   */
  private async keyTaken(orderId: string, held: HeldKey | undefined): Promise<CheckoutOutcome> {
    if (held === undefined) throw new Error('an order without a key was not recorded');
    const kept = await this.options.keys.outcomeOf(held);
    if (!kept.ok && kept.refusal.code !== 'IDEMPOTENCY_IN_PROGRESS') await this.releaseUnrecorded(orderId);
    return kept;
  }

  /** Keeps a definitive outcome under the key (or gives the one it has); `STORE_UNAVAILABLE` if the store cannot. */
  private async keep(held: HeldKey, outcome: KeptOutcome): Promise<CheckoutOutcome> {
    try {
      return await this.options.keys.answerFirst(held, outcome);
    } catch (error) {
      if (storeFault(error) === undefined) throw error;
      // Told nothing definitive: the refusal, unkept, could differ from what a retry is told.
      return refused(storeUnavailable('orders').toRefusal());
    }
  }

  /** An outcome an earlier attempt with the key reached: kept under the key if it is not yet, and marked replayed. */
  private async replayed(held: HeldKey | undefined, outcome: KeptOutcome): Promise<CheckoutOutcome> {
    if (held === undefined) return { ...outcome, replayed: true };
    const kept = await this.keep(held, outcome);
    return kept === outcome ? { ...outcome, replayed: true } : kept;
  }

  /**
   * Instant mode: pays the order just recorded. It answers "no" as a whole: the unit must not
   * stay held for a buyer who was refused. But a fault after the confirm (marking the order)
   * leaves it paid: then the purchase stands, and saying "no" would let a retry with the same key
   * buy and pay again. `complete`: the key was claimed with the order (`OrderRecords`); `keep`: it is
   * written with the outcome.
   */
  private async payAtOnce(row: OrderRow, held: HeldKey | undefined, onKey: 'complete' | 'keep'): Promise<CheckoutOutcome> {
    let outcome: KeptOutcome;
    try {
      outcome = { ok: true, order: await this.options.payments.settle(row) };
    } catch (error) {
      const failed = storeRefusal(error) ?? (storeFault(error) === undefined ? undefined : refused(outcomeUnknown('orders', row.id).toRefusal()));
      if (failed !== undefined) {
        // The payment may be half done: the order stays held (its hold expires, and any debit is
        // refunded, if no retry finishes it), and the key is opened for that retry.
        if (held !== undefined && onKey === 'complete') await this.abandon(held);
        return failed;
      }
      const after = await this.options.payments.cancelHeld(row).catch((cancelError: unknown) => {
        this.options.log.error({ err: cancelError, orderId: row.id }, 'could not release the hold of an unpaid instant purchase');
        return undefined;
      });
      if (after?.status === 'paid') outcome = { ok: true, order: toOrder(after) };
      else if (error instanceof DomainError && error.status < 500) outcome = refused(error.toRefusal());
      else {
        if (held !== undefined && onKey === 'complete') await this.abandon(held);
        throw error;
      }
    }
    if (held === undefined) return outcome;
    if (!outcome.ok && !isDefinitive(outcome.refusal)) {
      if (onKey === 'complete') await this.abandon(held);
      return outcome;
    }
    if (onKey === 'keep') return this.keep(held, outcome);
    // Made or refused for good: a failure to keep the outcome must not turn it into an error (the
    // key stays claimed with its order, and that order is what a retry gets).
    await this.options.keys.complete(held, outcome).catch((completeError: unknown) => {
      this.options.log.error({ err: completeError, orderId: row.id }, 'could not keep the outcome of an instant purchase');
    });
    return outcome;
  }

  /** Records the order (and its key), with the others recorded at this moment (`OrderRecords`). */
  private record(orderId: string, buyerId: string, allocation: Allocation, held: HeldKey | undefined, paysNext: boolean): Promise<Recorded> {
    return this.records.record({ orderId, buyerId, allocation, held, paysNext });
  }

  private async releaseUnrecorded(orderId: string): Promise<void> {
    // If this fails too, the sweeper returns the unit when its hold expires.
    await this.options.inventory.release(orderId).catch((releaseError: unknown) => {
      this.options.log.error({ err: releaseError, orderId }, 'could not release the hold of an unrecorded order');
    });
  }

  private async abandon(held: HeldKey): Promise<void> {
    await this.options.keys.abandon(held).catch((abandonError: unknown) => {
      this.options.log.error({ err: abandonError }, 'could not open an idempotency key now; it is opened when the store is back');
    });
  }
}
