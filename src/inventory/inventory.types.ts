/** The inventory module's data, as its clients see it. */
import type { StrategyName } from './strategy-names.js';

export interface Product {
  readonly id: string;
  readonly name: string;
  readonly priceCents: number;
  /** Units ever stocked. */
  readonly stock: number;
  /** Units free to buy now. */
  readonly remaining: number;
  /** `null`: unlimited. */
  readonly perBuyerLimit: number | null;
  readonly holdSeconds: number;
  readonly opensAt: string;
  readonly closesAt: string | null;
  readonly endedAt: string | null;
  readonly strategy: StrategyName;
  /** Only accounts created before this moment may buy (`ACCOUNT_TOO_NEW`); `null`: any account. */
  readonly accountsCreatedBefore: string | null;
  /** A buyer whose balance, less their other held orders, does not cover the hold is refused at reserve (`INSUFFICIENT_FUNDS`). */
  readonly requiresFunds: boolean;
  readonly createdAt: string;
}

export interface NewProduct {
  readonly name: string;
  readonly priceCents: number;
  readonly stock: number;
  readonly perBuyerLimit?: number | null;
  readonly holdSeconds?: number;
  readonly opensAt?: string;
  readonly closesAt?: string | null;
  readonly strategy?: StrategyName;
  readonly accountsCreatedBefore?: string | null;
  readonly requiresFunds?: boolean;
}

export interface ProductChange {
  /** Units to add (negative removes unallocated units; never below what is allocated). */
  readonly addStock?: number;
  readonly name?: string;
  readonly priceCents?: number;
  readonly perBuyerLimit?: number | null;
  readonly holdSeconds?: number;
  readonly opensAt?: string;
  readonly closesAt?: string | null;
  readonly accountsCreatedBefore?: string | null;
  readonly requiresFunds?: boolean;
}

/** Units by state, counted from the allocations (the truth), not from counters. */
export interface ProductStats {
  readonly stocked: number;
  readonly held: number;
  readonly paid: number;
  readonly remaining: number;
  readonly expired: number;
  readonly cancelled: number;
}

export type StockEventKind = 'stocked' | 'reserved' | 'released' | 'expired' | 'purchased';

/** One event of a product's stock stream (the `event-sourced` strategy keeps one per product). */
export interface StockEvent {
  /** Its number in the product's stream: 1, 2, 3, … with no gap. */
  readonly seq: number;
  readonly kind: StockEventKind;
  /** `stocked`: units added to the stock (negative: removed); the others: the allocation's quantity. */
  readonly units: number;
  /** The allocation (the order id) it concerns; `null` for `stocked`. */
  readonly allocationId: string | null;
  readonly buyerId: string | null;
  readonly at: string;
}

/** One page of a product's stock events, oldest first. */
export interface StockEventsPage {
  readonly events: readonly StockEvent[];
  /** The `after` of the next page; `null` on the last page. */
  readonly nextAfter: number | null;
}

export type AllocationStatus = 'held' | 'paid' | 'expired' | 'cancelled';

/**
 * What inventory knows of an order id beyond its database, where a strategy that grants outside it
 * (redis-lua) keeps holds the order pipeline has not written yet: `held` for this buyer (the
 * order is on its way), `settled` for this buyer (paid, cancelled or expired there), `none` (no
 * hold of this buyer under the id in any such strategy), `unreachable` (a store that may have it
 * did not answer).
 */
export type OutsideHold = 'held' | 'settled' | 'none' | 'unreachable';

export interface Allocation {
  /** The order id. */
  readonly id: string;
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly amountCents: number;
  readonly status: AllocationStatus;
  readonly expiresAt: string;
}

export interface ReserveRequest {
  /** The order id, minted by orders before it asks: the key that makes the step idempotent. */
  readonly allocationId: string;
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
  /**
   * The buyer's `Idempotency-Key`, when they sent one. A strategy that decides outside the
   * database (redis-lua) binds it to the order id, on every product, before it reserves, and keeps
   * a definitive refusal with the binding; the others ignore it (orders writes the key with the
   * order).
   */
  readonly idempotencyKey?: string;
  /**
   * The buyer's balance less their other held orders, in cents, when the caller knows it. A product
   * that requires funds refuses a hold it does not cover, and asks for it (`FUNDS_UNKNOWN`, nothing
   * done) when it is missing; other products ignore it.
   */
  readonly spendableCents?: number;
}

/** Why a reservation was refused. Every strategy names one; never an opaque "0 rows". */
export type ReserveRefusal =
  | {
      readonly ok: false;
      readonly reason: 'SOLD_OUT';
      readonly remaining: number;
      /**
       * The refusal was given earlier to this request's `Idempotency-Key` and kept (this is a
       * retry): `remaining` is of that moment, not now (redis-lua, which keeps keyed refusals itself).
       */
      readonly again?: boolean;
    }
  | { readonly ok: false; readonly reason: 'PRODUCT_NOT_FOUND' }
  | { readonly ok: false; readonly reason: 'SALE_NOT_OPEN'; readonly opensAt: string }
  | { readonly ok: false; readonly reason: 'SALE_ENDED' }
  | { readonly ok: false; readonly reason: 'ACCOUNT_TOO_NEW' }
  | { readonly ok: false; readonly reason: 'LIMIT_EXCEEDED'; readonly limit: number }
  /** The product requires funds, and the buyer's spendable balance does not cover the hold's amount. */
  | { readonly ok: false; readonly reason: 'INSUFFICIENT_FUNDS'; readonly amountCents: number; readonly spendableCents: number }
  /** The product requires funds and the request did not say the buyer's spendable balance: nothing done, ask again with it. */
  | { readonly ok: false; readonly reason: 'FUNDS_UNKNOWN' }
  | { readonly ok: false; readonly reason: 'CONTENTION'; readonly retryAfterSeconds: number }
  /** The `Idempotency-Key` is bound to another order (another request): redis-lua only. */
  | { readonly ok: false; readonly reason: 'KEY_REUSED' };

export type ReserveOutcome =
  | {
      readonly ok: true;
      readonly allocation: Allocation;
      /** Units left just after this one, when the strategy saw it under its guard (a hint: others may sell meanwhile). */
      readonly remaining?: number;
      /** The allocation was made earlier under this id (this is a retry). */
      readonly again?: boolean;
      /**
       * Decided, but not yet in inventory's database: the caller carries it through the order
       * pipeline (`recordHolds`) before it may tell the buyer "yes" (redis-lua).
       */
      readonly pending?: boolean;
      /**
       * A first grant under the request's `Idempotency-Key`, bound to it by a gate that holds its bindings
       * only since this instant (ms; see `RedisGate.bindingsSince`): an earlier use of the key may
       * have lost its binding, and only the key's row in PostgreSQL still knows (redis-lua).
       */
      readonly keyBoundSince?: number;
    }
  | ReserveRefusal;
