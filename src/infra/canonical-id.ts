/**
 * One spelling per id. Every id the system mints or keys by (users, products, orders, allocations)
 * is a UUID in its canonical text form: lower case, hyphenated (RFC 9562, section 4). The HTTP edge
 * accepts a UUID in any case and lower-cases it on the way in (`http/schemas.ts`); every layer
 * below that keys by an id (Redis keys, maps of this process, an `Idempotency-Key`'s scope) refuses
 * any other spelling instead of trusting the edge.
 *
 * @remarks Why it matters: PostgreSQL's `uuid` type reads `ABC…` and `abc…` as one value, but a
 * Redis key, a `Map` or a string scope does not. A product id sent in upper case once made the
 * Redis gate build a second stock counter for the same product and sell its units twice.
 */
import { DomainError } from './errors.js';

/** The canonical form, as a pattern (for JSON Schema) and as a regular expression. */
export const CANONICAL_ID_PATTERN = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
const CANONICAL_ID = new RegExp(CANONICAL_ID_PATTERN);

export function isCanonicalId(value: unknown): value is string {
  return typeof value === 'string' && CANONICAL_ID.test(value);
}

/**
 * Returns `value` if it is a canonical id; otherwise refuses with `VALIDATION_FAILED` naming
 * `field`. For the layers below the edge: a non-canonical id reaching them came from somewhere
 * that skipped the edge (a queue message, a caller's bug), and is refused, not repaired.
 */
export function canonicalId(value: string, field: string): string {
  if (CANONICAL_ID.test(value)) return value;
  throw new DomainError('VALIDATION_FAILED', `${field} must be a lower-case UUID`, {
    errors: [{ field, message: 'must be a lower-case UUID' }],
  });
}
