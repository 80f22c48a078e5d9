/**
 * The answers of the API as JSON Schema: the problem document, the shared schemas every module
 * contributes (registered once with `app.addSchema`, so the OpenAPI document has them in
 * `components.schemas` and routes `$ref` them), and `responses()`, which builds a route's
 * `schema.response` from its success bodies and the error codes it can answer with.
 *
 * A route's success schema is also its serializer (fast-json-stringify). Problems are not: every
 * problem is sent already serialised (`sendProblem`, a stored replay), and a string body passes
 * through Fastify untouched, so a problem's schema only documents it.
 */
import type { FastifyInstance } from 'fastify';
import { auditSchemas } from '../audit/audit.schemas.js';
import { ERROR_CODES, type ErrorCode } from '../infra/errors.js';
import { inventorySchemas } from '../inventory/inventory.schemas.js';
import { ORDER_STATUSES, ordersSchemas } from '../orders/orders.schemas.js';
import { usersSchemas } from '../users/users.schemas.js';
import { dateTime, ref, uuid } from './schemas.js';

export const PROBLEM_MEDIA_TYPE = 'application/problem+json';

const ALL_CODES = Object.keys(ERROR_CODES) as ErrorCode[];

/**
 * RFC 9457's members, the stable `code`, and the extras some codes add. Open
 * (`additionalProperties`): a refusal may carry members of its own, and a client must keep them.
 */
export const problemSchema = {
  $id: 'Problem',
  type: 'object',
  description: 'An RFC 9457 problem document; `code` is stable, `detail` is for people',
  required: ['type', 'title', 'status', 'code', 'detail'],
  properties: {
    type: { type: 'string', description: '`urn:flashsale:problem:<code in kebab case>`' },
    title: { type: 'string' },
    status: { type: 'integer', description: 'The HTTP status, repeated' },
    code: { type: 'string', enum: ALL_CODES },
    detail: { type: 'string' },
    instance: { type: 'string', description: 'The request path' },
    errors: {
      type: 'array',
      description: '`VALIDATION_FAILED`: what is wrong',
      items: {
        type: 'object',
        required: ['field', 'message'],
        properties: { field: { type: 'string', description: '"body.quantity", "querystring.limit", …' }, message: { type: 'string' } },
      },
    },
    remaining: { type: 'integer', description: '`SOLD_OUT`, `INVALID_STOCK_CHANGE`: units left' },
    stock: { type: 'integer', description: '`INVALID_STOCK_CHANGE`: units stocked' },
    limit: { type: 'integer', description: '`LIMIT_EXCEEDED`: units per buyer; `RATE_LIMITED`: requests per second; `TOO_MANY_IN_FLIGHT`: requests at once; `SIGNUP_RATE_LIMITED`: sign-ups per minute' },
    opensAt: { ...dateTime, description: '`SALE_NOT_OPEN`: when the sale opens' },
    productId: uuid,
    orderId: uuid,
    orderStatus: { type: 'string', enum: ORDER_STATUSES },
    balanceCents: { type: 'integer', description: '`INSUFFICIENT_FUNDS`: the balance' },
    amountCents: { type: 'integer', description: '`INSUFFICIENT_FUNDS`: what the order costs' },
    userId: uuid,
    key: { type: 'string', description: 'The `Idempotency-Key`' },
    strategy: { type: 'string', description: '`STRATEGY_UNAVAILABLE`: the strategy asked for' },
    down: { type: 'array', items: { type: 'string' }, description: '`NOT_READY`: the stores that did not answer' },
  },
  additionalProperties: true,
} as const;

/** Registers every shared response schema; `$ref` them as `ref('Order')`. */
export function registerResponseSchemas(app: FastifyInstance): void {
  for (const schema of [problemSchema, ...ordersSchemas, ...inventorySchemas, ...usersSchemas, ...auditSchemas]) {
    app.addSchema(schema);
  }
}

/** Problems of a route that takes a JSON body: malformed, too large, not JSON. */
export const BODY_PROBLEMS = ['VALIDATION_FAILED', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'] as const satisfies readonly ErrorCode[];
/** Problems of a buyer's route, from its guard and the per-buyer limits after it. */
export const BUYER_PROBLEMS = ['UNAUTHORIZED', 'TOKEN_EXPIRED', 'TOKEN_REVOKED', 'RATE_LIMITED', 'TOO_MANY_IN_FLIGHT'] as const satisfies readonly ErrorCode[];
/** Problems of an admin route, from its guard. */
export const ADMIN_PROBLEMS = ['UNAUTHORIZED', 'FORBIDDEN'] as const satisfies readonly ErrorCode[];

/**
 * Every route can answer these: the in-flight limit is a hook on every request, a store can be
 * down or fail around a write under any route that reaches one, and faults happen anywhere.
 */
const EVERY_ROUTE: readonly ErrorCode[] = ['OVERLOADED', 'STORE_UNAVAILABLE', 'OUTCOME_UNKNOWN', 'INTERNAL'];

/** Codes sent with `Retry-After` (their refusal says when to come back). */
const RETRY_AFTER_CODES: ReadonlySet<ErrorCode> = new Set([
  'OVERLOADED',
  'NOT_READY',
  'RATE_LIMITED',
  'TOO_MANY_IN_FLIGHT',
  'SIGNUP_RATE_LIMITED',
  'CONTENTION',
  'IDEMPOTENCY_IN_PROGRESS',
  'STORE_UNAVAILABLE',
  'OUTCOME_UNKNOWN',
]);

/** Codes given before an idempotent route's work runs (parsing, guards, the key's own checks): never a stored answer. */
const BEFORE_THE_WORK: ReadonlySet<ErrorCode> = new Set([
  ...BODY_PROBLEMS,
  'UNAUTHORIZED',
  'TOKEN_EXPIRED',
  'TOKEN_REVOKED',
  'FORBIDDEN',
  'RATE_LIMITED',
  'TOO_MANY_IN_FLIGHT',
  'IDEMPOTENCY_KEY_REUSED',
]);

const retryAfterHeader = {
  type: 'string',
  pattern: '^[1-9][0-9]*$',
  description: 'Seconds to wait before retrying (with the same `Idempotency-Key`, if any)',
} as const;

const replayedHeader = {
  type: 'string',
  enum: ['true'],
  description: "Present when this is the stored first answer to the request's `Idempotency-Key`",
} as const;

export interface ResponsesOptions {
  /** Honours `Idempotency-Key`: answers it stores may come back marked `Idempotent-Replayed`. */
  readonly idempotent?: boolean;
}

/**
 * A route's `schema.response`: `success` (status → schema, with its `description`) and, per
 * status, the problems its `codes` (plus `OVERLOADED` and `INTERNAL`) answer with: an
 * `application/problem+json` document whose `code` is one of them, described code by code.
 */
export function responses(
  success: Readonly<Record<number, object>>,
  codes: readonly ErrorCode[],
  options: ResponsesOptions = {},
): Record<string, object> {
  const result: Record<string, object> = {};
  for (const [status, schema] of Object.entries(success)) {
    result[status] = options.idempotent ? { ...schema, headers: { 'Idempotent-Replayed': replayedHeader } } : schema;
  }
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set([...codes, ...EVERY_ROUTE])) {
    const { status } = ERROR_CODES[code];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  for (const [status, statusCodes] of [...byStatus].sort(([a], [b]) => a - b)) {
    const headers: Record<string, object> = {};
    if (statusCodes.some((code) => RETRY_AFTER_CODES.has(code))) headers['Retry-After'] = retryAfterHeader;
    const stored = statusCodes.some((code) => !RETRY_AFTER_CODES.has(code) && !BEFORE_THE_WORK.has(code));
    if (options.idempotent && status < 500 && stored) headers['Idempotent-Replayed'] = replayedHeader;
    result[String(status)] = {
      description: statusCodes.map((code) => `\`${code}\`: ${ERROR_CODES[code].meaning}`).join(' '),
      ...(Object.keys(headers).length > 0 ? { headers } : {}),
      content: {
        [PROBLEM_MEDIA_TYPE]: {
          schema: { allOf: [ref('Problem'), { type: 'object', properties: { code: { type: 'string', enum: statusCodes } } }] },
        },
      },
    };
  }
  return result;
}
