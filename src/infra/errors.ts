/**
 * The one registry of error codes. Every refusal the API can give is listed here with its HTTP
 * status and a one-line meaning; `test/errors.test.ts` checks that the README's error table says
 * the same (code, status and meaning), so the two are edited together.
 *
 * Domain code throws {@link DomainError} with one of these codes, never an HTTP error; the HTTP
 * shell (`http/problem.ts`) turns it into `application/problem+json`.
 */
export const ERROR_CODES = {
  SOLD_OUT: { status: 409, title: 'Sold out', meaning: 'Not enough units remain for the whole quantity (all or nothing); `remaining` says how many are left.' },
  PRODUCT_NOT_FOUND: { status: 404, title: 'Product not found', meaning: 'No product has this id.' },
  SALE_NOT_OPEN: { status: 409, title: 'Sale not open', meaning: 'The sale window has not opened yet; `opensAt` says when it does.' },
  SALE_ENDED: { status: 409, title: 'Sale ended', meaning: 'The sale window has closed, or an admin ended the sale.' },
  ACCOUNT_TOO_NEW: { status: 403, title: 'Account too new', meaning: "This sale is open only to accounts created before the product's `accountsCreatedBefore`; this buyer's account is newer." },
  LIMIT_EXCEEDED: { status: 409, title: 'Limit exceeded', meaning: 'This buyer would hold more units of the product than its per-buyer limit allows; `limit` says the limit.' },
  CONTENTION: { status: 409, title: 'Contention', meaning: 'The strategy gave up under contention before it could decide; retry after `Retry-After` seconds.' },
  VALIDATION_FAILED: { status: 400, title: 'Validation failed', meaning: 'The request body, query or path is malformed; `errors` lists what is wrong.' },
  UNAUTHORIZED: { status: 401, title: 'Unauthorized', meaning: 'The bearer token is missing, malformed or forged (or signed under another `TOKEN_SECRET`), or the refresh token sent to `POST /v1/tokens` is not one this server issued.' },
  TOKEN_EXPIRED: { status: 401, title: 'Token expired', meaning: 'The access token has expired, or is of the pre-session format (`<userId>.<signature>`); exchange the refresh token (or that old token) at `POST /v1/tokens` for a new one.' },
  TOKEN_REVOKED: { status: 401, title: 'Token revoked', meaning: 'The session this token or refresh token belongs to was ended (the buyer signed out, or an admin revoked the user); refreshing will not help.' },
  FORBIDDEN: { status: 403, title: 'Forbidden', meaning: 'The token is valid but not allowed here (admin routes need the admin token).' },
  NOT_FOUND: { status: 404, title: 'Not found', meaning: 'No route matches this method and path.' },
  ORDER_NOT_FOUND: { status: 404, title: 'Order not found', meaning: 'No order with this id belongs to this buyer.' },
  USER_NOT_FOUND: { status: 404, title: 'User not found', meaning: 'The token names a user that does not exist.' },
  ORDER_NOT_PAYABLE: { status: 409, title: 'Order not payable', meaning: 'The order was cancelled; only a held order can be paid.' },
  ORDER_ALREADY_PAID: { status: 409, title: 'Order already paid', meaning: 'The order is already paid (a retry with the same `Idempotency-Key` gets the first answer instead).' },
  ORDER_NOT_CANCELLABLE: { status: 409, title: 'Order not cancellable', meaning: 'Only a held order can be cancelled; this one is paid or expired (`orderStatus` says which).' },
  INSUFFICIENT_FUNDS: { status: 402, title: 'Insufficient funds', meaning: 'The balance does not cover the order: at pay, nothing was debited and the hold stays until it expires; at purchase, on a product that `requiresFunds`, the balance less the buyer\'s other held orders does not cover the hold and nothing was reserved (not kept under the `Idempotency-Key`: top up and retry).' },
  HOLD_EXPIRED: { status: 410, title: 'Hold expired', meaning: 'The hold expired before it was paid; the unit is back in stock and any debit was refunded (or, while users is unreachable, recorded owed for the sweeper to refund).' },
  IDEMPOTENCY_IN_PROGRESS: { status: 409, title: 'Idempotency key in progress', meaning: 'A request with this `Idempotency-Key` is still being handled; retry shortly to get its answer.' },
  IDEMPOTENCY_KEY_REUSED: { status: 422, title: 'Idempotency key reused', meaning: 'This `Idempotency-Key` was used for a different request (another body, route or order).' },
  RATE_LIMITED: { status: 429, title: 'Rate limited', meaning: 'This buyer sent more requests per second to the buyer routes than `RATE_LIMIT_PER_SECOND` allows; retry after `Retry-After` seconds.' },
  TOO_MANY_IN_FLIGHT: { status: 429, title: 'Too many requests in flight', meaning: 'This buyer has `BUYER_MAX_IN_FLIGHT` requests being handled already (`limit` says how many); retry after `Retry-After` seconds, once one has been answered.' },
  SIGNUP_RATE_LIMITED: { status: 429, title: 'Sign-up rate limited', meaning: 'This client address (an IPv6 address counted by its /64) sent more sign-ups this minute than `SIGNUP_RATE_LIMIT_PER_MINUTE` allows; retry after `Retry-After` seconds. No user was created.' },
  INVALID_STOCK_CHANGE: { status: 409, title: 'Invalid stock change', meaning: 'The change would leave fewer units stocked than are already held or paid.' },
  STRATEGY_UNAVAILABLE: { status: 400, title: 'Strategy unavailable', meaning: 'The strategy is unknown, or the store it needs is not configured.' },
  BAD_REQUEST: { status: 400, title: 'Bad request', meaning: 'The HTTP request itself is malformed (refused by the server\'s HTTP parser, e.g. both `Content-Length` and `Transfer-Encoding`); the connection is closed.' },
  REQUEST_TIMEOUT: { status: 408, title: 'Request timeout', meaning: 'The request\'s headers did not arrive within `HEADERS_TIMEOUT_MS`, or the whole request within `REQUEST_TIMEOUT_MS`; the connection is closed.' },
  HEADERS_TOO_LARGE: { status: 431, title: 'Request header fields too large', meaning: 'The request\'s headers are larger than the server accepts (16 KiB in all); the connection is closed.' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large', meaning: 'The request body is larger than the server accepts: 4 KiB (1 MiB for `POST /v1/admin/orders/missing`).' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type', meaning: 'The body must be `application/json`.' },
  OVERLOADED: { status: 503, title: 'Overloaded', meaning: 'The server is at its in-flight limit and refused the request at once; retry after `Retry-After` seconds.' },
  NOT_READY: { status: 503, title: 'Not ready', meaning: 'A store the server needs is unreachable; `down` names it.' },
  STORE_UNAVAILABLE: { status: 503, title: 'Store unavailable', meaning: 'A store this request needs is down or restarting; nothing was done. Retry after `Retry-After` seconds.' },
  OUTCOME_UNKNOWN: { status: 503, title: 'Outcome unknown', meaning: 'A store failed around a step that may have happened (`orderId` names the order). Retry with the same `Idempotency-Key` to learn which; it never makes a second order.' },
  INTERNAL: { status: 500, title: 'Internal error', meaning: 'An unexpected fault; the log has the details.' },
} as const satisfies Record<string, { status: number; title: string; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Extra members of a problem document (RFC 9457 allows any), e.g. `remaining` for `SOLD_OUT`. */
export type ProblemExtras = Readonly<Record<string, unknown>>;

/**
 * A refusal as plain data: what a module client returns instead of throwing, and what an
 * `Idempotency-Key` keeps as its answer. It crosses a process boundary as JSON unchanged.
 */
export interface Refusal {
  readonly code: ErrorCode;
  readonly detail: string;
  readonly extras: ProblemExtras;
  /** Come back after this many seconds (`CONTENTION`, `IDEMPOTENCY_IN_PROGRESS`, …). */
  readonly retryAfterSeconds?: number;
}

/**
 * Whether a refusal is its request's answer for good. One that tells the buyer to come back
 * (`Retry-After`) or a fault (5xx) is not: it is never kept under an `Idempotency-Key`, so a retry
 * with the same key may redo the work.
 */
export function isDefinitive(refusal: Refusal): boolean {
  return ERROR_CODES[refusal.code].status < 500 && refusal.retryAfterSeconds === undefined;
}

/**
 * A refusal or fault that the domain knows how to name. `extras` become members of the problem
 * document; `retryAfterSeconds` becomes the `Retry-After` header.
 */
export class DomainError extends Error {
  override readonly name = 'DomainError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly extras: ProblemExtras;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message?: string, extras: ProblemExtras = {}, retryAfterSeconds?: number, options?: ErrorOptions) {
    const status = ERROR_CODES[code].status;
    // A refusal is an answer, not a fault: nobody reads its stack, and capturing one is the
    // dearest part of refusing a buyer at a drop (thousands a second). Faults (5xx) keep theirs.
    const stackLimit = Error.stackTraceLimit;
    if (status < 500) Error.stackTraceLimit = 0;
    super(message ?? ERROR_CODES[code].meaning, options);
    Error.stackTraceLimit = stackLimit;
    this.code = code;
    this.status = status;
    this.extras = extras;
    this.retryAfterSeconds = retryAfterSeconds;
  }

  /** The refusal as plain data. */
  toRefusal(): Refusal {
    const refusal = { code: this.code, detail: this.message, extras: this.extras };
    return this.retryAfterSeconds === undefined ? refusal : { ...refusal, retryAfterSeconds: this.retryAfterSeconds };
  }

  /** The error a refusal stands for (one that crossed a process boundary as data). */
  static of(refusal: Refusal): DomainError {
    return new DomainError(refusal.code, refusal.detail, refusal.extras, refusal.retryAfterSeconds);
  }
}

/** Refuses with `code`, as data: the hot path's way of saying no without throwing. */
export function refusal(code: ErrorCode, detail?: string, extras: ProblemExtras = {}, retryAfterSeconds?: number): Refusal {
  const made = { code, detail: detail ?? ERROR_CODES[code].meaning, extras };
  return retryAfterSeconds === undefined ? made : { ...made, retryAfterSeconds };
}
