/**
 * What the other modules may ask of users. In one process the client is the service itself; in
 * split mode an HTTP client implements the same interface.
 */
export interface User {
  readonly id: string;
  readonly name: string;
  readonly balanceCents: number;
  readonly createdAt: string;
}

/** An access token and when it stops being accepted. */
export interface AccessToken {
  /** Send as `Authorization: Bearer <token>`. */
  readonly token: string;
  readonly expiresAt: string;
}

/** A new buyer: their access token, and the refresh credential that gets the next ones. */
export interface IssuedUser extends AccessToken {
  readonly id: string;
  /** Exchanged at `POST /v1/tokens` for a fresh access token; stored only as its SHA-256. */
  readonly refreshToken: string;
}

/** A session that was ended, and until when tokens issued from it would still pass their expiry. */
export interface RevokedSession {
  readonly sessionId: string;
  /** The latest expiry of an access token issued from the session: after it, nothing of it needs refusing. */
  readonly accessUntil: string;
}

/** Sessions revoked since a cursor, and the cursor to ask from next time. */
export interface RevocationPage {
  readonly sessions: readonly RevokedSession[];
  /** Opaque; pass it back as `after`. */
  readonly next: string;
}

/**
 * A debit either happened (now or by an earlier attempt for the same order) or was refused: the
 * balance does not cover it, or the order was refunded first (`REFUNDED`: its hold ended and a
 * refund took the order's debit slot, or refunded the debit an earlier attempt made), so nothing
 * is taken for it, ever.
 */
export type DebitOutcome =
  | { readonly ok: true; readonly balanceCents: number }
  | { readonly ok: false; readonly reason: 'INSUFFICIENT_FUNDS'; readonly balanceCents: number }
  | { readonly ok: false; readonly reason: 'REFUNDED' };

/** What the ledger holds for one order (the audit's money check). */
export interface OrderLedger {
  readonly orderId: string;
  /** Cents debited for it; 0 when it never was (or its slot is void). */
  readonly debitedCents: number;
  /** Cents refunded for it; 0 when none. */
  readonly refundedCents: number;
  /** A refund came before any debit: none may land (a `void` row). */
  readonly voided: boolean;
}

export interface LedgerMovement {
  readonly userId: string;
  readonly orderId: string;
  readonly amountCents: number;
}

export interface UsersClient {
  /** Creates the user and their first session. */
  signUp(name: string): Promise<IssuedUser>;
  /** Creates `count` buyers, each with a session, and a starting balance in one statement (bench and drills). */
  createMany(count: number, balanceCents: number, namePrefix: string): Promise<IssuedUser[]>;
  /**
   * A fresh access token for the session of `refreshToken` (or of a token of the pre-session
   * format, which becomes a session's refresh credential on first use). Throws `UNAUTHORIZED`
   * (unknown or forged) or `TOKEN_REVOKED` (the session was ended).
   */
  refresh(refreshToken: string): Promise<AccessToken>;
  /**
   * Ends one session of the user: its refresh credential stops working at once, its access tokens
   * as soon as each process has seen the revocation. Returns it, or `undefined` if it had ended already.
   */
  signOut(userId: string, sessionId: string): Promise<RevokedSession | undefined>;
  /**
   * Ends every session of the user, and the pre-session token if they had one. Returns the
   * sessions ended now. Throws `USER_NOT_FOUND`.
   */
  revokeUser(userId: string): Promise<RevokedSession[]>;
  /**
   * Sessions revoked since `after` (`undefined`: every revocation whose tokens may still be
   * unexpired) that still matter: whose access tokens have not all expired.
   */
  revokedSessions(after: string | undefined): Promise<RevocationPage>;
  /** Throws `USER_NOT_FOUND`. */
  getUser(id: string): Promise<User>;
  /**
   * Takes the order's amount from the balance, with a ledger row keyed by the order id: a retried
   * debit of the same order takes nothing more; a debit of an order refunded first takes nothing
   * (`REFUNDED`). Throws `USER_NOT_FOUND`.
   */
  debit(movement: LedgerMovement): Promise<DebitOutcome>;
  /**
   * Gives back the debit of an order (a ledger `refund` row keyed by the order id, at most once);
   * with no debit yet, records that none may come (a `void` row), so a debit still on its way is
   * refused. Returns the cents refunded now: 0 when there was no debit or it was refunded already.
   */
  refund(movement: Pick<LedgerMovement, 'userId' | 'orderId'>): Promise<number>;
  /** Of these order ids, those debited and not refunded (the sweeper's check of ended orders). */
  debitsNotRefunded(orderIds: readonly string[]): Promise<string[]>;
  /** The ledger of each of these orders that has any debit, refund or void (for the audit). */
  ledgerOf(orderIds: readonly string[]): Promise<OrderLedger[]>;
  /** Adds to a balance (admin top-up), with a ledger `credit` row. Throws `USER_NOT_FOUND`. */
  credit(userId: string, amountCents: number): Promise<User>;
}
