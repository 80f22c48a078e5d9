/**
 * The one error handler: turns any error into `application/problem+json` (RFC 9457) with a
 * stable `code`. Domain errors keep their code; Fastify's own (validation, bad JSON, wrong media
 * type, too large) map to theirs; anything else is `INTERNAL` and logged at error level.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DomainError, ERROR_CODES, type ErrorCode, type ProblemExtras } from '../infra/errors.js';
import { outcomeUnknown, storeFault, storeUnavailable, STORE_RETRY_AFTER_SECONDS } from '../infra/store-errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json; charset=utf-8';

export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly code: ErrorCode;
  readonly detail: string;
  readonly instance?: string;
  readonly [extra: string]: unknown;
}

export function problemType(code: ErrorCode): string {
  return `urn:flashsale:problem:${code.toLowerCase().replaceAll('_', '-')}`;
}

/** Every code's `type`, made once: a drop refuses thousands of buyers a second. */
const PROBLEM_TYPES = new Map((Object.keys(ERROR_CODES) as ErrorCode[]).map((code) => [code, problemType(code)]));

/** No extras: shared, never written to. */
const NO_EXTRAS: ProblemExtras = Object.freeze({});

export function problem(code: ErrorCode, detail: string, extras: ProblemExtras = NO_EXTRAS, instance?: string): Problem {
  const entry = ERROR_CODES[code];
  // Built field by field, not by spreading `extras` into a literal: every refusal of a drop comes
  // through here, and an object spread is the dearest way to copy a few members.
  const body: Record<string, unknown> = {
    type: PROBLEM_TYPES.get(code) ?? problemType(code),
    title: entry.title,
    status: entry.status,
    code,
    detail,
  };
  if (instance !== undefined) body['instance'] = instance;
  // The standard fields win over an extra of the same name.
  for (const field of Object.keys(extras)) if (!Object.hasOwn(body, field)) body[field] = extras[field];
  return body as unknown as Problem;
}

/** Sends a problem document; `Retry-After` when the refusal says when to come back. */
export function sendProblem(reply: FastifyReply, body: Problem, retryAfterSeconds?: number): FastifyReply {
  if (retryAfterSeconds !== undefined) void reply.header('retry-after', String(Math.max(1, Math.ceil(retryAfterSeconds))));
  return reply.status(body.status).header('content-type', PROBLEM_CONTENT_TYPE).send(JSON.stringify(body));
}

/** At most this many entries in a `VALIDATION_FAILED` problem's `errors`. */
export const MAX_VALIDATION_ERRORS = 20;
/** At most this many characters in any problem's `detail` made from what the request sent. */
export const MAX_DETAIL_LENGTH = 500;

/** At most this many characters in an entry's `field` (an unknown field's name is the client's to choose). */
const MAX_FIELD_LENGTH = 100;

function truncated(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length - 1)}…`;
}

function bounded(text: string): string {
  return truncated(text, MAX_DETAIL_LENGTH);
}

/**
 * One line that names the first problem and how many there are, rather than Fastify's message,
 * which lists every error again (a field name can be as long as the body allows).
 */
function validationDetail(count: number, first: { field: string; message: string } | undefined): string {
  if (first === undefined) return 'the request is invalid';
  const more = count > 1 ? ` (and ${count - 1} more)` : '';
  return bounded(`${first.field} ${first.message}${more}`);
}

interface Classified {
  readonly code: ErrorCode;
  readonly detail: string;
  readonly extras: ProblemExtras;
  readonly retryAfterSeconds?: number;
}

function classify(error: FastifyError | DomainError | Error): Classified {
  if (error instanceof DomainError) {
    return { code: error.code, detail: error.message, extras: error.extras, retryAfterSeconds: error.retryAfterSeconds };
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    // Bounded whatever the request holds: Ajv reports every error (`allErrors`), and a body of
    // unknown fields would otherwise buy an answer many times its own size.
    const errors = fastifyError.validation.slice(0, MAX_VALIDATION_ERRORS).map((issue) => ({
      field: truncated(
        `${fastifyError.validationContext ?? 'body'}${issue.instancePath.replaceAll('/', '.')}` +
          (typeof issue.params['missingProperty'] === 'string' ? `.${issue.params['missingProperty']}` : '') +
          (typeof issue.params['additionalProperty'] === 'string' ? `.${issue.params['additionalProperty']}` : ''),
        MAX_FIELD_LENGTH,
      ),
      message: issue.message ?? 'is invalid',
    }));
    return { code: 'VALIDATION_FAILED', detail: validationDetail(fastifyError.validation.length, errors[0]), extras: { errors } };
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { code: 'UNSUPPORTED_MEDIA_TYPE', detail: 'send the body as application/json', extras: {} };
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { code: 'PAYLOAD_TOO_LARGE', detail: fastifyError.message, extras: {} };
    default:
      break;
  }
  // A store failure no module named (a read of the admin's, the metrics): still a 503 to retry, never a 500.
  const fault = storeFault(error);
  if (fault !== undefined) {
    const named = fault === 'unavailable' ? storeUnavailable('database') : outcomeUnknown('database', undefined);
    return { code: named.code, detail: named.message, extras: named.extras, retryAfterSeconds: STORE_RETRY_AFTER_SECONDS };
  }
  if (fastifyError.statusCode === 400) {
    return { code: 'VALIDATION_FAILED', detail: bounded(fastifyError.message), extras: { errors: [] } };
  }
  if (fastifyError.statusCode === 415) return { code: 'UNSUPPORTED_MEDIA_TYPE', detail: fastifyError.message, extras: {} };
  if (fastifyError.statusCode === 413) return { code: 'PAYLOAD_TOO_LARGE', detail: fastifyError.message, extras: {} };
  return { code: 'INTERNAL', detail: 'an unexpected error occurred', extras: {} };
}

/**
 * Node's error for a request whose client hung up while its body was being read (`aborted`,
 * `ECONNRESET`): the same code as a store's reset connection, which is a store fault; what tells
 * them apart is that this request's own socket is gone.
 */
function clientHungUp(error: Error, request: FastifyRequest): boolean {
  return (error as { code?: unknown }).code === 'ECONNRESET' && request.raw.socket.destroyed;
}

export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | DomainError, request: FastifyRequest, reply: FastifyReply) => {
    if (clientHungUp(error, request)) {
      // Nobody is left to answer, and it is no fault of ours: at error level anyone could flood the log.
      request.log.debug('client closed the connection before its request was read');
      // Nothing to send it on: the reply is dropped, not answered.
      reply.hijack();
      return reply;
    }
    const found = classify(error);
    const status = ERROR_CODES[found.code].status;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    // A refusal is an answer, not an event: at a drop there are thousands a second (metrics count them).
    else request.log.debug({ code: found.code }, found.detail);
    return sendProblem(reply, problem(found.code, found.detail, found.extras, request.url), found.retryAfterSeconds);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]}`)),
  );
}
