/**
 * The per-buyer rate limit: at most `perSecond` requests per buyer in each wall-clock second, to
 * the buyer routes together (purchase, pay, cancel, the buyer's reads, sign-out), beyond which the
 * buyer gets `429 RATE_LIMITED` with `Retry-After`. Keyed by the buyer id from the
 * verified token, never by IP (a whole venue may share one address).
 *
 * @remarks A fixed one-second window in process memory: the whole map is dropped when the second
 * changes, so it never grows beyond the buyers of one second and needs no timer. With several API
 * processes each enforces its own share; it is a throttle, not a guard of stock. On by default (20
 * a second: more than a person or a client retrying as told sends, and a script holding a drop for
 * one account is slowed to it); off (no hook at all) when `perSecond` is 0. Runs as an
 * `onRequest` hook after the buyer guard (it counts by the id that guard sets), before the body is
 * read: a buyer over the limit costs nothing to parse, whatever it sent.
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { DomainError } from '../infra/errors.js';

export function perBuyerRateLimit(perSecond: number, now: () => number = Date.now): onRequestHookHandler | undefined {
  if (perSecond <= 0) return undefined;
  let window = -1;
  const counts = new Map<string, number>();
  return (request: FastifyRequest, _reply: FastifyReply, done) => {
    const second = Math.floor(now() / 1000);
    if (second !== window) {
      window = second;
      counts.clear();
    }
    const used = (counts.get(request.buyerId) ?? 0) + 1;
    counts.set(request.buyerId, used);
    if (used > perSecond) {
      throw new DomainError('RATE_LIMITED', `at most ${perSecond} requests per second per buyer`, { limit: perSecond }, 1);
    }
    done();
  };
}
