/**
 * The order pipeline's message: orders the Redis gate granted, on their way to PostgreSQL. JSON,
 * signed by the publisher (`message-signature.ts`) and checked field by field by the consumer
 * before it writes anything; the consumer writes each order idempotently by `orderId`, so a
 * redelivery, a second publish by a retry, or a write made early (a payment that arrived first)
 * changes nothing the second time.
 */
import { isCanonicalId } from '../infra/canonical-id.js';
import { SIGNATURE_HEADER, SIGNED_CONTENT_TYPE, type MessageSigner } from './message-signature.js';

/** The buyer's `Idempotency-Key`, as the key's row in orders' database is written with the order. */
export interface PlacedKey {
  readonly key: string;
  readonly claimId: string;
  readonly scope: string;
  readonly hash: string;
  /** `false`: an instant purchase, whose key is claimed with the order and answered once paid. */
  readonly answered: boolean;
}

export interface PlacedOrder {
  readonly orderId: string;
  readonly productId: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly amountCents: number;
  /** When the hold expires, by Redis's clock (ISO). */
  readonly expiresAt: string;
  /** When the gate granted it (ISO): the order's `createdAt`, the same in the answer and in the row. */
  readonly placedAt: string;
  readonly key?: PlacedKey;
}

/**
 * One message: the orders placed in one event-loop turn of one process. A message costs the
 * broker (a quorum-queue append and its confirm) and both clients (frames, a socket write) the
 * same whatever it carries, so a storm's orders travel together; each is still written, and is
 * idempotent, by its own id.
 */
export interface PlacedOrders {
  readonly orders: readonly PlacedOrder[];
}

/** Why a message is not one the consumer may write: dead-lettered at once, never retried. */
export interface RejectedMessage {
  /** `unsigned`: no signature; `forged`: one that does not verify; `malformed`: signed, but not placed orders. */
  readonly rejected: 'unsigned' | 'forged' | 'malformed';
  readonly why: string;
}

/** A message as the AMQP client delivers it: its body (a `Buffer` unless the client parsed it), content type, headers. */
export interface DeliveredMessage {
  readonly body: unknown;
  readonly contentType?: string | undefined;
  readonly headers?: Readonly<Record<string, unknown>> | undefined;
}

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/;

function invalidKey(key: unknown): string | undefined {
  if (key === undefined) return undefined;
  if (key === null || typeof key !== 'object') return 'key is not an object';
  const fields = key as Record<string, unknown>;
  for (const field of ['key', 'scope', 'hash'] as const) {
    if (typeof fields[field] !== 'string' || fields[field] === '' || fields[field].length > 200) return `key.${field} is not a short string`;
  }
  if (!isCanonicalId(fields['claimId'])) return 'key.claimId is not a lower-case UUID';
  if (typeof fields['answered'] !== 'boolean') return 'key.answered is not a boolean';
  return undefined;
}

/** What is wrong with one order of a message, or `undefined`: every field has the type and form it must. */
function invalidOrder(body: unknown): string | undefined {
  if (body === null || typeof body !== 'object') return 'an order is not a JSON object';
  const event = body as Record<string, unknown>;
  for (const field of ['orderId', 'productId', 'buyerId'] as const) {
    if (!isCanonicalId(event[field])) return `${field} is not a lower-case UUID`;
  }
  for (const field of ['expiresAt', 'placedAt'] as const) {
    const value = event[field];
    if (typeof value !== 'string' || !ISO_INSTANT.test(value) || Number.isNaN(Date.parse(value))) return `${field} is not an ISO instant`;
  }
  const { quantity, amountCents } = event;
  if (!Number.isSafeInteger(quantity) || (quantity as number) < 1) return 'quantity is not a whole number of at least 1';
  if (!Number.isSafeInteger(amountCents) || (amountCents as number) < 0) return 'amountCents is not a whole number of at least 0';
  return invalidKey(event['key']);
}

/** The message's JSON read back, or why it is not one (such a message is dead-lettered, not retried). */
export function parsePlacedOrders(body: unknown): PlacedOrders | RejectedMessage {
  const orders = (body as { orders?: unknown } | null)?.orders;
  if (!Array.isArray(orders) || orders.length === 0) return { rejected: 'malformed', why: 'not a list of placed orders' };
  for (const order of orders) {
    const invalid = invalidOrder(order);
    if (invalid !== undefined) return { rejected: 'malformed', why: invalid };
  }
  return { orders: orders as PlacedOrder[] };
}

/** The body the publisher sends for `orders`, as bytes (what it signs). */
export function placedOrdersBody(orders: readonly PlacedOrder[]): Buffer {
  const message: PlacedOrders = { orders };
  return Buffer.from(JSON.stringify(message));
}

/**
 * The orders of a delivered message, once its signature verifies; or why it is refused. A message
 * without a signature is refused unless `acceptUnsigned` (an upgrade's drain of messages published
 * before signing existed); a signature that does not verify, or one on a body of another kind, is
 * a forgery. Only then is the JSON read, and every field checked.
 */
export function readPlacedMessage(message: DeliveredMessage, signer: MessageSigner, acceptUnsigned: boolean): PlacedOrders | RejectedMessage {
  const signature = message.headers?.[SIGNATURE_HEADER];
  if (signature === undefined) {
    if (!acceptUnsigned) return { rejected: 'unsigned', why: 'the message carries no signature' };
    return parsePlacedOrders(Buffer.isBuffer(message.body) ? parseJson(message.body) : message.body);
  }
  if (message.contentType !== SIGNED_CONTENT_TYPE || !Buffer.isBuffer(message.body) || !signer.verify(message.body, signature)) {
    return { rejected: 'forged', why: 'the signature does not verify' };
  }
  return parsePlacedOrders(parseJson(message.body));
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}
