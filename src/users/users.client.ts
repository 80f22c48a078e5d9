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

export interface IssuedUser {
  readonly id: string;
  readonly token: string;
}

/** A debit either happened (now or by an earlier attempt for the same order) or was refused. */
export type DebitOutcome =
  | { readonly ok: true; readonly balanceCents: number }
  | { readonly ok: false; readonly reason: 'INSUFFICIENT_FUNDS'; readonly balanceCents: number };

export interface LedgerMovement {
  readonly userId: string;
  readonly orderId: string;
  readonly amountCents: number;
}

export interface UsersClient {
  signUp(name: string): Promise<IssuedUser>;
  /** Creates `count` buyers with a starting balance in one statement (bench and drills). */
  createMany(count: number, balanceCents: number, namePrefix: string): Promise<IssuedUser[]>;
  /** Throws `USER_NOT_FOUND`. */
  getUser(id: string): Promise<User>;
  /**
   * Takes the order's amount from the balance, with a ledger row keyed by the order id: a retried
   * debit of the same order takes nothing more. Throws `USER_NOT_FOUND`.
   */
  debit(movement: LedgerMovement): Promise<DebitOutcome>;
  /**
   * Gives back the debit of an order (a ledger `refund` row keyed by the order id, at most once).
   * Returns the cents refunded now: 0 when there was no debit or it was refunded already.
   */
  refund(movement: Pick<LedgerMovement, 'userId' | 'orderId'>): Promise<number>;
  /** Adds to a balance (admin top-up), with a ledger `credit` row. Throws `USER_NOT_FOUND`. */
  credit(userId: string, amountCents: number): Promise<User>;
}
