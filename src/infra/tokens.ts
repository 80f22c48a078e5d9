/**
 * Buyer bearer tokens: `<userId>.<signature>`, the signature an HMAC-SHA256 of the user id under
 * `TOKEN_SECRET`. Verified without a database round trip; a forged or altered token fails.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Verified tokens remembered; the cache is emptied when it reaches this size. */
const VERIFIED_CACHE_SIZE = 100_000;

export class Tokens {
  /**
   * Tokens that verified, and their user id. A token never expires or changes, so one that
   * verified once verifies forever; remembering it spares an HMAC per request (a sizeable share
   * of answering a refused buyer). Only verified tokens are kept: forgeries cost an HMAC each.
   */
  private readonly verified = new Map<string, string>();

  constructor(private readonly secret: string) {}

  sign(userId: string): string {
    return `${userId}.${this.signature(userId)}`;
  }

  /** The user id the token was signed for, or `undefined` for anything else. */
  verify(token: string): string | undefined {
    const known = this.verified.get(token);
    if (known !== undefined) return known;
    const userId = this.check(token);
    if (userId !== undefined) {
      if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.clear();
      this.verified.set(token, userId);
    }
    return userId;
  }

  private check(token: string): string | undefined {
    const dot = token.indexOf('.');
    if (dot <= 0) return undefined;
    const userId = token.slice(0, dot);
    if (!UUID.test(userId)) return undefined;
    const given = Buffer.from(token.slice(dot + 1));
    const expected = Buffer.from(this.signature(userId));
    return given.length === expected.length && timingSafeEqual(given, expected) ? userId : undefined;
  }

  private signature(userId: string): string {
    return createHmac('sha256', this.secret).update(`buyer:${userId}`).digest('base64url');
  }
}

/** Constant-time comparison of two secrets (the admin token). */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
