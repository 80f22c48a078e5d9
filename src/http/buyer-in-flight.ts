/**
 * The per-buyer cap on requests in flight: at most `max` requests of one buyer handled at once by
 * this process, beyond which the buyer gets `429 TOO_MANY_IN_FLIGHT` with `Retry-After` at once.
 * The rate limit (`rate-limit.ts`) bounds how many requests a buyer starts each second; this bounds
 * how much of the server's time they hold together, whatever each one waits for (a lock, a store,
 * an order on its way through the pipeline).
 *
 * @remarks A slot is taken by an `onRequest` hook after the buyer guard and the rate limit (a
 * refused request takes none) and freed when the request's answer is made (`onSend`), not when its
 * connection closes: a client that hangs up does not stop the work it started, so the slot stays
 * taken until that work ends. A request that never reached its handler (the client hung up while
 * its body was read) frees its slot when its connection closes. Counted in process memory: the
 * map holds only buyers with a request in flight. Off (no hook at all) when `max` is 0.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';

interface Slot {
  readonly buyerId: string;
  /** The request reached its handler: its answer frees the slot, whatever its connection does. */
  handling: boolean;
}

/**
 * Registers the hooks that free slots on `app` and returns the hook that takes one (to run after
 * the buyer guard); `undefined` when `max` is 0.
 */
export function perBuyerInFlight(app: FastifyInstance, max: number): onRequestHookHandler | undefined {
  if (max <= 0) return undefined;
  const inFlight = new Map<string, number>();
  const slots = new WeakMap<FastifyRequest, Slot>();
  const free = (request: FastifyRequest): void => {
    const slot = slots.get(request);
    if (slot === undefined) return;
    slots.delete(request);
    const left = (inFlight.get(slot.buyerId) ?? 1) - 1;
    if (left > 0) inFlight.set(slot.buyerId, left);
    else inFlight.delete(slot.buyerId);
  };
  app.addHook('preHandler', (request, _reply, done) => {
    const slot = slots.get(request);
    if (slot !== undefined) slot.handling = true;
    done();
  });
  app.addHook('onSend', (request, _reply, payload, done) => {
    free(request);
    done(null, payload);
  });
  return (request: FastifyRequest, reply: FastifyReply, done) => {
    const used = inFlight.get(request.buyerId) ?? 0;
    if (used >= max) {
      throw new DomainError('TOO_MANY_IN_FLIGHT', `at most ${max} requests per buyer at once`, { limit: max }, 1);
    }
    inFlight.set(request.buyerId, used + 1);
    const slot: Slot = { buyerId: request.buyerId, handling: false };
    slots.set(request, slot);
    reply.raw.once('close', () => {
      if (!slot.handling) free(request);
    });
    done();
  };
}
