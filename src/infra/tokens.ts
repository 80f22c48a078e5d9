/**
 * Buyer access tokens: `<userId>.<sessionId>.<expiresAtMs>.<signature>`, the signature an
 * HMAC-SHA256 of the first three parts under `TOKEN_SECRET`. Verified without a database round
 * trip: a forged or altered token fails, and one past its expiry is refused however often it
 * verified before. Whether its session was revoked is the users module's to say
 * (`src/users/revoked-sessions.ts`); this file knows only signatures and time.
 *
 * Tokens of the pre-session format, `<userId>.<signature>` (an HMAC of `buyer:<userId>`), are no
 * longer access tokens: `verify` names them `legacy`, and `legacyUserId` checks one for the users
 * module, which accepts it as a refresh credential.
 *
 * @remarks Not a JWT: the token is read only by this server, whose answers already carry its
 * `expiresAt`, so a header, an algorithm field (and its confusion attacks) and a JSON payload would
 * buy nothing; and the well-kept JWT libraries verify asynchronously, a promise on every purchase.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const EXPIRY = /^[1-9][0-9]{0,15}$/;

/** Verified tokens remembered; the cache is emptied when it reaches this size. */
const VERIFIED_CACHE_SIZE = 100_000;

/** What an access token says, once its signature checks. */
export interface AccessClaims {
  readonly userId: string;
  readonly sessionId: string;
  /** Milliseconds since the epoch after which the token is refused. */
  readonly expiresAtMs: number;
}

/** Why a bearer token is not a usable access token. */
export type TokenRefusal = 'invalid' | 'expired' | 'legacy';

export type TokenCheck =
  | ({ readonly ok: true } & AccessClaims)
  | { readonly ok: false; readonly reason: TokenRefusal };

/** One object per refusal: refusing a forged token allocates nothing. */
const REFUSED: { readonly [R in TokenRefusal]: TokenCheck } = {
  invalid: Object.freeze({ ok: false, reason: 'invalid' }),
  expired: Object.freeze({ ok: false, reason: 'expired' }),
  legacy: Object.freeze({ ok: false, reason: 'legacy' }),
};

type Verified = Extract<TokenCheck, { ok: true }>;

export class Tokens {
  /**
   * Tokens that verified, with their claims. A token's signature never changes, so one that
   * verified once verifies forever; remembering it spares an HMAC per request (a sizeable share
   * of answering a refused buyer). Its expiry is checked on every hit, so the cache never outlives
   * it. Only verified, unexpired tokens are kept: forgeries cost an HMAC each.
   */
  private readonly verified = new Map<string, Verified>();

  /** `now`: the clock expiry is checked against (tests inject one). */
  constructor(
    private readonly secret: string,
    private readonly now: () => number = Date.now,
  ) {}

  sign(claims: AccessClaims): string {
    const body = `${claims.userId}.${claims.sessionId}.${claims.expiresAtMs}`;
    return `${body}.${this.signature(`access:${body}`)}`;
  }

  /** The token's claims, or why it is refused. */
  verify(token: string): TokenCheck {
    const known = this.verified.get(token);
    if (known !== undefined) {
      if (known.expiresAtMs > this.now()) return known;
      this.verified.delete(token);
      return REFUSED.expired;
    }
    const parts = token.split('.');
    if (parts.length === 2) return this.legacyUserId(token) === undefined ? REFUSED.invalid : REFUSED.legacy;
    if (parts.length !== 4) return REFUSED.invalid;
    const [userId = '', sessionId = '', expiry = '', given = ''] = parts;
    if (!UUID.test(userId) || !UUID.test(sessionId) || !EXPIRY.test(expiry)) return REFUSED.invalid;
    if (!sameSecret(given, this.signature(`access:${userId}.${sessionId}.${expiry}`))) return REFUSED.invalid;
    const expiresAtMs = Number(expiry);
    if (expiresAtMs <= this.now()) return REFUSED.expired;
    const claims: Verified = { ok: true, userId, sessionId, expiresAtMs };
    if (this.verified.size >= VERIFIED_CACHE_SIZE) this.verified.clear();
    this.verified.set(token, claims);
    return claims;
  }

  /** The user a token of the pre-session format was signed for, or `undefined` for anything else. */
  legacyUserId(token: string): string | undefined {
    const dot = token.indexOf('.');
    if (dot <= 0) return undefined;
    const userId = token.slice(0, dot);
    if (!UUID.test(userId)) return undefined;
    return sameSecret(token.slice(dot + 1), this.signature(`buyer:${userId}`)) ? userId : undefined;
  }

  private signature(payload: string): string {
    return createHmac('sha256', this.secret).update(payload).digest('base64url');
  }
}

/** Constant-time comparison of two secrets (a signature, the admin token). */
export function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
