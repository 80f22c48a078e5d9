/**
 * Placed-orders messages are signed: an HMAC-SHA256 of the message's bytes under the pipeline
 * secret every process of the install shares (`PIPELINE_SECRET`), in a header. The consumer
 * writes a message only if its signature verifies under the current secret or, during a
 * rotation, the previous one (`PIPELINE_SECRET_PREVIOUS`). Anyone else who reaches the broker
 * (any client with its credentials) can publish to the queue, but not sign: an unsigned, forged
 * or altered message is dead-lettered and changes nothing.
 *
 * @remarks The bytes are signed as sent: the body travels with a content type of its own
 * (`SIGNED_CONTENT_TYPE`), which the AMQP client hands over as a `Buffer` instead of parsing it
 * (it parses `application/json`), so the consumer checks exactly what the publisher signed before
 * it reads a single field. A replayed genuine message needs no defence here: every write it makes
 * is idempotent by order id. Node's `crypto` HMAC is the tool made for this; there is nothing to
 * add a dependency for.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The content type of a signed placed-orders message (JSON underneath). */
export const SIGNED_CONTENT_TYPE = 'application/vnd.flashsale.placed-orders+json';
/** The header that carries the signature: `v1=<base64url HMAC-SHA256 of the body>`. */
export const SIGNATURE_HEADER = 'x-flashsale-signature';

const VERSION = 'v1=';

export class MessageSigner {
  private readonly keys: readonly string[];

  /** `current` signs; `previous` (a rotation's old secret) is accepted when verifying too. */
  constructor(current: string, previous?: string) {
    this.keys = previous === undefined ? [current] : [current, previous];
  }

  /** The signature header's value for `body`. */
  sign(body: Buffer): string {
    return `${VERSION}${this.mac(this.keys[0] ?? '', body).toString('base64url')}`;
  }

  /** Whether `signature` (the header as received, whatever it is) signs `body` under a secret of this install. */
  verify(body: Buffer, signature: unknown): boolean {
    if (typeof signature !== 'string' || !signature.startsWith(VERSION)) return false;
    const given = Buffer.from(signature.slice(VERSION.length), 'base64url');
    return this.keys.some((key) => {
      const expected = this.mac(key, body);
      return given.length === expected.length && timingSafeEqual(given, expected);
    });
  }

  private mac(key: string, body: Buffer): Buffer {
    return createHmac('sha256', key).update(body).digest();
  }
}
