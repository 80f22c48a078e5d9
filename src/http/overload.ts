/**
 * The in-flight limit: beyond `maxInFlight` requests being handled at once, the server answers
 * `503 OVERLOADED` with `Retry-After` at once instead of queueing without bound (a queue that
 * grows until clients time out is how connections get dropped). Set above the default scenarios.
 *
 * @remarks Written here rather than taken from `@fastify/under-pressure`: that plugin sheds on
 * event-loop delay and memory, not on a count of requests in flight, which is what we promise.
 */
import type { FastifyInstance } from 'fastify';
import { problem, sendProblem } from './problem.js';

export interface OverloadGuard {
  /** Requests being handled right now. */
  inFlight(): number;
  /** Requests refused with 503 since start. */
  shed(): number;
}

export function registerOverloadGuard(app: FastifyInstance, maxInFlight: number): OverloadGuard {
  let inFlight = 0;
  let shed = 0;
  app.addHook('onRequest', (request, reply, done) => {
    if (inFlight >= maxInFlight) {
      shed += 1;
      sendProblem(reply, problem('OVERLOADED', `more than ${maxInFlight} requests in flight`), 1);
      return;
    }
    inFlight += 1;
    // 'close' fires once whether the response finished or the client went away.
    reply.raw.once('close', () => {
      inFlight -= 1;
    });
    done();
  });
  return { inFlight: () => inFlight, shed: () => shed };
}
