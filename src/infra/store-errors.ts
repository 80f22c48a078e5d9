/**
 * What a failed store call means for the request: the store was not reached (nothing was done),
 * or it failed around a step that may have happened. A module turns its own store's failures
 * into `STORE_UNAVAILABLE` or `OUTCOME_UNKNOWN` before they cross its client, so the code survives
 * a process boundary and no buyer is told `500` for a database restart.
 *
 * The same taxonomy names a call to another flashsale service over HTTP (`service-client.ts`):
 * not reached is `STORE_UNAVAILABLE`; a read that timed out or was cut is `STORE_UNAVAILABLE`; a
 * write that timed out or was cut after it was sent is `OUTCOME_UNKNOWN` with its order id.
 *
 * @remarks Unknown is the default for a connection lost mid-statement: the statement may have
 * committed before the reply was lost. Only a failure to connect, or PostgreSQL's refusal to take
 * a connection (`57P03` starting up or shutting down, `53300` too many connections, `28000` the role
 * may not log in), proves that nothing was done.
 */
import { DomainError } from './errors.js';

export type StoreFault = 'unavailable' | 'unknown';

/**
 * Node's, postgres.js's and undici's codes for a store (or a service) that was never reached: no
 * connection, so nothing was sent.
 */
const NOT_REACHED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'CONNECT_TIMEOUT',
  'CONNECTION_ENDED',
  'UND_ERR_CONNECT_TIMEOUT',
]);
/**
 * Codes of a connection lost, or an answer not come in time, while a statement (or a service call)
 * may have been under way: undici's socket error, its timeouts waiting for the headers or the
 * body, and a request its client closed, destroyed or aborted (which may have been sent).
 */
const LOST = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_DESTROYED',
  'ERR_STREAM_DESTROYED',
  'UND_ERR_SOCKET',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_ABORTED',
]);
/**
 * SQLSTATEs: cannot connect now (starting up, shutting down), too many connections, connection
 * rejected, and the role refused at log-in (`28000`: `NOLOGIN` or no `pg_hba.conf` entry; `28P01`:
 * wrong password). A refused log-in did nothing and is an operator's to lift: waited out like a
 * server that is down, it never dead-letters the consumer's orders or answers a buyer `500`.
 */
const REFUSED_STATES = new Set(['57P03', '53300', '08001', '08004', '28000', '28P01']);

/** What `error` says about the store, or `undefined` when it is not a store failure. */
export function storeFault(error: unknown): StoreFault | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  if (NOT_REACHED.has(code) || REFUSED_STATES.has(code)) return 'unavailable';
  // Class 08: connection exception; 57P01/57P02: the server was shut down or crashed under us.
  if (LOST.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02') return 'unknown';
  return undefined;
}

/** How long a buyer is asked to wait before retrying after a store failure. */
export const STORE_RETRY_AFTER_SECONDS = 1;

export function storeUnavailable(store: string): DomainError {
  return new DomainError('STORE_UNAVAILABLE', `the ${store} store is unavailable; nothing was done`, { store }, STORE_RETRY_AFTER_SECONDS);
}

export function outcomeUnknown(store: string, orderId: string | undefined): DomainError {
  return new DomainError(
    'OUTCOME_UNKNOWN',
    `the ${store} store failed around a step that may have happened; retry with the same Idempotency-Key`,
    orderId === undefined ? { store } : { store, orderId },
    STORE_RETRY_AFTER_SECONDS,
  );
}

/**
 * Runs a call on a module's store, turning a store failure into the domain error that names it.
 * `orderId`: the order the call may have changed (a read has no outcome to be unknown: its
 * failure is always `STORE_UNAVAILABLE`).
 */
export async function onStore<T>(store: string, call: () => Promise<T>, orderId?: string, writes = true): Promise<T> {
  try {
    return await call();
  } catch (error) {
    const fault = storeFault(error);
    if (fault === undefined) throw error;
    if (fault === 'unavailable' || !writes) throw storeUnavailable(store);
    throw outcomeUnknown(store, orderId);
  }
}

/** A store failure, raw from the driver or already named by a module. */
export function isStoreFailure(error: unknown): boolean {
  if (error instanceof DomainError) return error.code === 'STORE_UNAVAILABLE' || error.code === 'OUTCOME_UNKNOWN';
  return storeFault(error) !== undefined;
}
