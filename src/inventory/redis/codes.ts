/**
 * The small negative codes the gate's Lua scripts answer instead of doing something, and the one
 * function that turns them into the domain's refusals. A script's header lists which it returns.
 */
import type { ReserveRefusal } from '../inventory.types.js';
import type { ConfirmOutcome } from '../stock-strategy.js';

/** Code by meaning; the numbers are part of the scripts' contract (see their headers). */
export const SCRIPT_CODES = {
  NOT_LOADED: -1,
  PRODUCT_NOT_FOUND: -2,
  SALE_NOT_OPEN: -3,
  SALE_ENDED: -4,
  LIMIT_EXCEEDED: -5,
  SOLD_OUT: -6,
  NOT_FOUND: -7,
  EXPIRED: -8,
  CANCELLED: -9,
  NOT_HELD: -10,
  NOT_EXPIRED: -11,
  INVALID_STOCK_CHANGE: -12,
  KEY_REUSED: -13,
  ACCOUNT_TOO_NEW: -14,
  INSUFFICIENT_FUNDS: -15,
  FUNDS_UNKNOWN: -16,
} as const;

/**
 * The product's keys are missing from Redis (never loaded, or Redis restarted or was flushed): the
 * gate cannot decide until they are rebuilt from PostgreSQL, so the caller answers 503 meanwhile.
 */
export interface NotLoaded {
  readonly ok: false;
  readonly reason: 'NOT_LOADED';
}

/** Every refusal a script can answer, by reason. */
export type GateRefusal =
  | NotLoaded
  | Exclude<ReserveRefusal, { reason: 'CONTENTION' }>
  | Extract<ConfirmOutcome, { ok: false }>
  /** release: the hold is paid, cancelled or expired already. */
  | { readonly ok: false; readonly reason: 'NOT_HELD' }
  /** release with only-if-expired: its expiry has not passed by Redis TIME. */
  | { readonly ok: false; readonly reason: 'NOT_EXPIRED' }
  /** claim-key: the Idempotency-Key is bound to another order id, i.e. another request. */
  | { readonly ok: false; readonly reason: 'KEY_REUSED' }
  /** update: fewer units remain unallocated than the change takes away. */
  | { readonly ok: false; readonly reason: 'INVALID_STOCK_CHANGE'; readonly remaining: number };

export type GateRefusalReason = GateRefusal['reason'];

/**
 * Turns a script's negative `code` (with its `detail`, when the header names one) into a refusal.
 * Throws on a code no script answers: a script and this table disagree.
 */
export function refusalOf(code: number, detail: number): GateRefusal {
  switch (code) {
    case SCRIPT_CODES.NOT_LOADED:
      return { ok: false, reason: 'NOT_LOADED' };
    case SCRIPT_CODES.PRODUCT_NOT_FOUND:
      return { ok: false, reason: 'PRODUCT_NOT_FOUND' };
    case SCRIPT_CODES.SALE_NOT_OPEN:
      return { ok: false, reason: 'SALE_NOT_OPEN', opensAt: new Date(detail).toISOString() };
    case SCRIPT_CODES.SALE_ENDED:
      return { ok: false, reason: 'SALE_ENDED' };
    case SCRIPT_CODES.LIMIT_EXCEEDED:
      return { ok: false, reason: 'LIMIT_EXCEEDED', limit: detail };
    case SCRIPT_CODES.SOLD_OUT:
      return { ok: false, reason: 'SOLD_OUT', remaining: Math.max(0, detail) };
    case SCRIPT_CODES.NOT_FOUND:
      return { ok: false, reason: 'NOT_FOUND' };
    case SCRIPT_CODES.EXPIRED:
      return { ok: false, reason: 'EXPIRED' };
    case SCRIPT_CODES.CANCELLED:
      return { ok: false, reason: 'CANCELLED' };
    case SCRIPT_CODES.NOT_HELD:
      return { ok: false, reason: 'NOT_HELD' };
    case SCRIPT_CODES.NOT_EXPIRED:
      return { ok: false, reason: 'NOT_EXPIRED' };
    case SCRIPT_CODES.INVALID_STOCK_CHANGE:
      return { ok: false, reason: 'INVALID_STOCK_CHANGE', remaining: detail };
    case SCRIPT_CODES.KEY_REUSED:
      return { ok: false, reason: 'KEY_REUSED' };
    case SCRIPT_CODES.ACCOUNT_TOO_NEW:
      return { ok: false, reason: 'ACCOUNT_TOO_NEW' };
    case SCRIPT_CODES.FUNDS_UNKNOWN:
      return { ok: false, reason: 'FUNDS_UNKNOWN' };
    default:
      throw new Error(`a gate script answered the unknown code ${code}`);
  }
}

/** Narrows a refusal to the reasons one script may answer; any other is a script/table mismatch. */
export function expectRefusal<R extends GateRefusalReason>(
  refusal: GateRefusal,
  script: string,
  reasons: readonly R[],
): Extract<GateRefusal, { reason: R }> {
  if (!(reasons as readonly string[]).includes(refusal.reason)) {
    throw new Error(`the ${script} script answered ${refusal.reason}, which it never should`);
  }
  return refusal as Extract<GateRefusal, { reason: R }>;
}
