/**
 * A route's work, run once per (buyer, `Idempotency-Key`): a repeat of the same request gets the
 * stored first answer, a repeat while the first runs gets `IDEMPOTENCY_IN_PROGRESS`, the key for
 * another request `IDEMPOTENCY_KEY_REUSED`. Without a key the work simply runs.
 *
 * The key is claimed (a row with no answer yet) before the work's change can be answered for. Pay
 * claims it first. A purchase claims it late, when its reservation's turn with the store has come,
 * and side by side with the reservation (`claimKey`, handed to inventory as `alongside`): at a
 * drop, most buyers are refused from memory or while waiting in line before that, and for them
 * the key and the refusal are written in one statement instead of a claim and then an answer;
 * a winner's claim costs no round trip before the store's. A reservation whose claim finds the
 * key taken is undone before anything is answered.
 *
 * @remarks Two requests with one key in this process never run side by side: the second is told
 * `IDEMPOTENCY_IN_PROGRESS` (or `IDEMPOTENCY_KEY_REUSED`) at once, as the database would tell it.
 * Without this, a double submit could reserve twice; with a per-buyer limit the claim's holder
 * might then be refused over the limit while the other's unit goes back. Across processes the
 * database's claim still decides which request answers; that rare race refuses, never oversells.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DomainError } from '../infra/errors.js';
import { problem, PROBLEM_CONTENT_TYPE, sendProblem, type Problem } from '../http/problem.js';
import { requestHash, type HeldKey, type IdempotencyClaim, type IdempotencyStore } from './idempotency.js';

type Replay = Extract<IdempotencyClaim, { kind: 'replay' }>;

export interface Answer {
  readonly statusCode: number;
  readonly body: unknown;
  /** The work stored this answer under the key itself (with the order, in one statement). */
  readonly stored?: boolean;
}

/** The work gave up, leaving nothing changed, because `claimKey` said no. */
export const WITHDRAWN = Symbol('withdrawn');

/** What a route's work ends with: an answer, a refusal it returns rather than throws, or withdrawn. */
export type Outcome = Answer | DomainError | typeof WITHDRAWN;

/**
 * Claims the key now; `true`: claimed, go on. `false`: the key already has an answer: leave
 * nothing changed (undo what was done meanwhile) and end with {@link WITHDRAWN}; the answer is
 * replayed. Throws `IDEMPOTENCY_IN_PROGRESS` and `IDEMPOTENCY_KEY_REUSED`.
 */
export type ClaimKey = () => Promise<boolean>;

export interface IdempotentOptions {
  /** Claim when the work calls `claimKey`, not before it runs (the purchase). */
  readonly claimLate?: boolean;
}

/** Keys whose request is running in this process, per store: `buyer\nkey` → the request's hash. */
const running = new WeakMap<IdempotencyStore, Map<string, string>>();

/**
 * Marks the key as running in this process and returns how to unmark it; throws what the
 * database would say if another request with it runs here already.
 */
function startRunning(store: IdempotencyStore, buyerId: string, key: string, hash: string): () => void {
  let keys = running.get(store);
  if (keys === undefined) {
    keys = new Map();
    running.set(store, keys);
  }
  const id = `${buyerId}\n${key}`;
  const other = keys.get(id);
  if (other !== undefined) {
    if (other !== hash) throw new DomainError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different request', { key });
    throw new DomainError('IDEMPOTENCY_IN_PROGRESS', 'a request with this Idempotency-Key is still being handled', { key }, 1);
  }
  keys.set(id, hash);
  return () => keys.delete(id);
}

/**
 * Whether a refusal is the key's answer for good. One that tells the buyer to come back
 * (`Retry-After`: `CONTENTION`, `IDEMPOTENCY_IN_PROGRESS`, `RATE_LIMITED`) or a fault (5xx) is
 * not: it is never stored, so a retry with the same key may redo the work.
 */
function isDefinitive(error: DomainError): boolean {
  return error.status < 500 && error.retryAfterSeconds === undefined;
}

export async function idempotent(
  store: IdempotencyStore,
  request: FastifyRequest,
  reply: FastifyReply,
  scope: string,
  work: (held: HeldKey | undefined, claimKey: ClaimKey | undefined) => Promise<Outcome>,
  options: IdempotentOptions = {},
): Promise<FastifyReply> {
  const header = request.headers['idempotency-key'];
  const key = typeof header === 'string' ? header : undefined;
  if (key === undefined) {
    const answer = await work(undefined, undefined);
    if (answer === WITHDRAWN) throw new Error('work without a key cannot be withdrawn');
    if (answer instanceof DomainError) return sendProblem(reply, problemOf(answer, request), answer.retryAfterSeconds);
    return reply.status(answer.statusCode).send(answer.body);
  }
  const hash = requestHash(scope, request.body ?? null);
  const stopRunning = startRunning(store, request.buyerId, key, hash);
  const held: HeldKey = { buyerId: request.buyerId, key, claimId: randomUUID() };
  try {
    let claimed = false;
    /** What a claim found instead of claiming: the key's earlier answer. */
    let found: Replay | undefined;
    const claimKey: ClaimKey = async () => {
      const claim = await store.claim(held, scope, hash);
      if (claim.kind === 'claimed') {
        claimed = true;
        return true;
      }
      found = claim;
      return false;
    };

    if (options.claimLate !== true && !(await claimKey())) return sendReplay(reply, found);
    let answer: Outcome;
    try {
      answer = await work(held, options.claimLate === true ? claimKey : undefined);
    } catch (error) {
      // Unclaimed, nothing of this request's is under the key (the claim itself may be what threw).
      if (!claimed) throw error;
      if (!(error instanceof DomainError && isDefinitive(error))) {
        await abandon(store, request, held);
        throw error;
      }
      answer = error;
    }
    if (answer === WITHDRAWN) return sendReplay(reply, found);
    if (answer instanceof DomainError) {
      if (!claimed) return claimWithRefusal(store, request, reply, held, scope, hash, answer);
      if (isDefinitive(answer)) return storeRefusal(store, request, reply, held, answer);
      await abandon(store, request, held);
      // Rare (CONTENTION, a key taken over, a fault named by the domain): the error handler answers it.
      throw answer;
    }
    if (!claimed) throw new Error(`the work of ${scope} answered without claiming its key`);
    if (answer.stored !== true) await store.complete(held, answer.statusCode, answer.body);
    return reply.status(answer.statusCode).send(answer.body);
  } finally {
    stopRunning();
  }
}

function problemOf(error: DomainError, request: FastifyRequest): Problem {
  return problem(error.code, error.message, error.extras, request.url);
}

/** Sends the key's earlier answer again, marked as a replay. */
function sendReplay(reply: FastifyReply, found: Replay | undefined): FastifyReply {
  if (found === undefined) throw new Error('withdrawn without a claim');
  void reply.header('idempotent-replayed', 'true');
  if (found.statusCode >= 400) {
    // The stored problem is the one sent: built once, not again by the error handler.
    return reply.status(found.statusCode).header('content-type', PROBLEM_CONTENT_TYPE).send(JSON.stringify(found.response));
  }
  return reply.status(found.statusCode).send(found.response);
}

/** Refused before claiming: the key and its refusal go in one statement, unless the key has an answer already. */
async function claimWithRefusal(
  store: IdempotencyStore,
  request: FastifyRequest,
  reply: FastifyReply,
  held: HeldKey,
  scope: string,
  hash: string,
  refusal: DomainError,
): Promise<FastifyReply> {
  // Not definitive (CONTENTION, …): nothing is stored, so the same key may retry.
  if (!isDefinitive(refusal)) throw refusal;
  const response = problemOf(refusal, request);
  const claim = await store.claim(held, scope, hash, { statusCode: refusal.status, response });
  return claim.kind === 'claimed' ? sendProblem(reply, response, refusal.retryAfterSeconds) : sendReplay(reply, claim);
}

/** Drops the claim of an answer that is not definitive, so the same key may retry. */
async function abandon(store: IdempotencyStore, request: FastifyRequest, held: HeldKey): Promise<void> {
  await store.abandon(held).catch((abandonError: unknown) => {
    request.log.error({ err: abandonError }, 'could not release an idempotency key');
  });
}

/** Stores a definitive refusal under the claimed key and sends it. */
async function storeRefusal(
  store: IdempotencyStore,
  request: FastifyRequest,
  reply: FastifyReply,
  held: HeldKey,
  refusal: DomainError,
): Promise<FastifyReply> {
  const refused = problemOf(refusal, request);
  // The buyer still gets the refusal if storing it fails; the key then waits out its claim.
  await store.complete(held, refusal.status, refused).catch((completeError: unknown) => {
    request.log.error({ err: completeError }, 'could not store a refusal under its idempotency key');
  });
  return sendProblem(reply, refused, refusal.retryAfterSeconds);
}
