/**
 * A module's client served over HTTP to the install's other processes (`service-client.ts` calls
 * it): `POST /internal/<service>/<method>` with `{ "args": [...] }`. Meant for a port of its own,
 * never the public one, and refused without the install's service token (a buyer's token, or
 * none, is `401`).
 *
 * The answer is `200 { ok: true, value }` or `200 { ok: false, error }` with the refusal as plain
 * data, written as JSON by hand rather than through a response schema, which would drop what it
 * does not list. A call whose deadline has passed when it arrives is not started (`504`): its
 * caller has given up, and work done now would only be an outcome nobody hears. A method that
 * throws something other than a `DomainError` is a `500` the caller reads as unknown.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, refusal } from './errors.js';
import { DEADLINE_HEADER, assertServiceToken, methodPath, servicePath, type ServiceMethods } from './service-methods.js';
import { storeUnavailable } from './store-errors.js';

export interface ServedModule<T extends object> {
  /** The service's name (the path's first segment). */
  readonly service: string;
  /** The module, or how to find it when a call comes (a module built after its routes, which must come before listening). */
  readonly implementation: T | (() => T);
  readonly methods: ServiceMethods<T>;
}

/** Registers the internal routes of `served` on `app`, each guarded by `token`. */
export function serveModule<T extends object>(app: FastifyInstance, served: ServedModule<T>, token: string): void {
  assertServiceToken(token);
  const expected = Buffer.from(`Bearer ${token}`);
  const find = (): Record<string, (...args: unknown[]) => Promise<unknown>> =>
    (typeof served.implementation === 'function' ? served.implementation() : served.implementation) as unknown as Record<
      string,
      (...args: unknown[]) => Promise<unknown>
    >;
  const names = new Set(Object.keys(served.methods));
  // Answering from the hook (and returning the reply) ends the request there: no body is parsed.
  const guard = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    const given = Buffer.from(request.headers.authorization ?? '');
    if (given.length === expected.length && timingSafeEqual(given, expected)) return undefined;
    return send(reply, 401, { ok: false, error: refusal('UNAUTHORIZED', 'the internal routes take the service token') });
  };
  // Whether the service is up and can serve (its callers' readiness checks ask this).
  app.get(servicePath(served.service), { onRequest: guard }, async (_request, reply) => send(reply, 200, { ok: true }));
  app.post<{ Params: { method: string }; Body: { args: unknown[] } }>(
    methodPath(served.service, ':method'),
    {
      onRequest: guard,
      schema: {
        body: { type: 'object', required: ['args'], additionalProperties: false, properties: { args: { type: 'array', maxItems: 10 } } },
      },
    },
    async (request, reply) => {
      const { method } = request.params;
      const implementation = find();
      const call = implementation[method];
      if (!names.has(method) || typeof call !== 'function') {
        return send(reply, 404, { ok: false, error: refusal('NOT_FOUND', `${served.service} has no method ${method}`) });
      }
      const deadline = Number(request.headers[DEADLINE_HEADER]);
      if (Number.isFinite(deadline) && Date.now() > deadline) {
        return send(reply, 504, { ok: false, error: storeUnavailable(served.service).toRefusal() });
      }
      try {
        const value = await call.apply(implementation, request.body.args);
        return await send(reply, 200, { ok: true, value });
      } catch (error) {
        if (error instanceof DomainError) return send(reply, 200, { ok: false, error: error.toRefusal() });
        request.log.error({ err: error, method }, `${served.service}.${method} failed`);
        return send(reply, 500, { ok: false, error: refusal('INTERNAL', `${served.service}.${method} failed`) });
      }
    },
  );
}

function send(reply: FastifyReply, status: number, answer: unknown): FastifyReply {
  return reply.code(status).type('application/json').send(JSON.stringify(answer));
}
