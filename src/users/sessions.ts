/**
 * A buyer's sessions: the refresh credential each one is signed in with, the access tokens
 * exchanged for it, and their end. A session is made at sign-up (in the statement that makes the
 * user) or when a token of the pre-session format is first exchanged; it ends when the buyer signs
 * out or an admin revokes the user, and then its refresh credential is refused at once and its
 * access tokens as soon as each process has polled the revocation (`revokedSince`).
 *
 * @remarks A refresh and a revocation of the same session serialise on its row: the refresh is
 * an `UPDATE … WHERE revoked_at IS NULL`, so one that waits behind a revocation finds the session
 * ended and issues nothing. Every access token of a session therefore expires by the session's
 * `access_until`, which is how long its revocation must be remembered.
 */
import { createHash, randomBytes } from 'node:crypto';
import { transaction, type Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';
import { onStore } from '../infra/store-errors.js';
import type { Tokens } from '../infra/tokens.js';
import type { AccessToken, RevocationPage, RevokedSession } from './users.client.js';

/** 256 bits: a refresh credential cannot be guessed, so exchanging one needs no rate limit. */
const REFRESH_BYTES = 32;

/**
 * How far behind its own clock the users module looks when it answers which revocations still
 * matter: the processes that ask compare `accessUntil` with their own clocks, which may run behind
 * the database's.
 */
const CLOCK_SKEW_ALLOWANCE = '1 minute';

export interface SessionsOptions {
  readonly sql: Sql;
  readonly tokens: Tokens;
  /** How long an access token is accepted after it is issued. */
  readonly tokenTtlSeconds: number;
  readonly newId: () => string;
  readonly now?: () => number;
}

/** A session about to be stored, and what its buyer is told. */
export interface NewSession {
  readonly id: string;
  readonly userId: string;
  /** Hex of the refresh credential's SHA-256: all that is stored of it. */
  readonly refreshHash: string;
  readonly refreshToken: string;
  readonly access: AccessToken;
}

/** Sessions issued together, whose first access tokens share one expiry. */
export interface NewSessions {
  readonly sessions: readonly NewSession[];
  readonly accessUntil: Date;
}

interface RevokedRow {
  id: string;
  access_until: Date;
}

function refreshHash(refreshToken: string): string {
  return createHash('sha256').update(refreshToken).digest('hex');
}

function revoked(rows: readonly RevokedRow[]): RevokedSession[] {
  return rows.map((row) => ({ sessionId: row.id, accessUntil: row.access_until.toISOString() }));
}

export class Sessions {
  private readonly now: () => number;

  constructor(private readonly options: SessionsOptions) {
    this.now = options.now ?? Date.now;
  }

  /** A new session for each of `userIds`, not yet stored: the caller inserts them with the users. */
  issue(userIds: readonly string[]): NewSessions {
    const secrets = randomBytes(REFRESH_BYTES * userIds.length);
    const accessUntil = this.accessUntil();
    const sessions = userIds.map((userId, index) => {
      const refreshToken = secrets.subarray(index * REFRESH_BYTES, (index + 1) * REFRESH_BYTES).toString('base64url');
      const id = this.options.newId();
      return { id, userId, refreshHash: refreshHash(refreshToken), refreshToken, access: this.access(userId, id, accessUntil) };
    });
    return { sessions, accessUntil };
  }

  refresh(refreshToken: string): Promise<AccessToken> {
    return onStore('users', async () => {
      const hash = refreshHash(refreshToken);
      const accessUntil = this.accessUntil();
      // A credential of the random kind has no dot; one with a dot can only be a pre-session token.
      const legacy = refreshToken.includes('.') && (await this.adoptLegacy(refreshToken, hash, accessUntil));
      const [session] = await this.options.sql<{ id: string; user_id: string }[]>`
        update sessions set access_until = greatest(access_until, ${accessUntil})
         where refresh_hash = decode(${hash}, 'hex') and revoked_at is null
        returning id, user_id`;
      if (session) return this.access(session.user_id, session.id, accessUntil);
      // Ours (a stored hash, or a pre-session token's signature), but ended.
      const [ended] = legacy ? [true] : await this.options.sql`select 1 from sessions where refresh_hash = decode(${hash}, 'hex')`;
      if (ended) throw new DomainError('TOKEN_REVOKED', 'this session was ended; sign up again');
      throw new DomainError('UNAUTHORIZED', 'the refresh token is not valid');
    });
  }

  signOut(userId: string, sessionId: string): Promise<RevokedSession | undefined> {
    return onStore('users', async () => {
      const rows = await this.options.sql<RevokedRow[]>`
        update sessions set revoked_at = now(), revoked_xid = pg_current_xact_id()
         where id = ${sessionId} and user_id = ${userId} and revoked_at is null
        returning id, access_until`;
      return revoked(rows)[0];
    });
  }

  revokeUser(userId: string): Promise<RevokedSession[]> {
    return onStore('users', () =>
      transaction(this.options.sql, async (tx) => {
        // The user's row first, locked: a pre-session token being adopted at this moment either
        // made its session before this lock (and the next statement, a fresh snapshot, ends it)
        // or waits for it and finds the token no longer usable.
        const [user] = await tx`update users set legacy_token_usable = false where id = ${userId} returning id`;
        if (!user) throw new DomainError('USER_NOT_FOUND', undefined, { userId });
        const rows = await tx<RevokedRow[]>`
          update sessions set revoked_at = now(), revoked_xid = pg_current_xact_id()
           where user_id = ${userId} and revoked_at is null
          returning id, access_until`;
        return revoked(rows);
      }),
    );
  }

  /**
   * Revocations whose transaction is at or after `after`, with the cursor to ask from next: the
   * oldest transaction still running when this was read. Every transaction older than it has
   * committed or rolled back, so none can add a revocation behind the cursor; ones at or after it
   * may be read twice, which the caller's set absorbs. A timestamp cursor would lose a revocation
   * whose transaction took its time before committing behind a later one.
   */
  revokedSince(after: string | undefined): Promise<RevocationPage> {
    return onStore('users', async () => {
      const rows = await this.options.sql<{ next: string; id: string | null; access_until: Date | null }[]>`
        select horizon.xmin::text as next, s.id, s.access_until
          from (select pg_snapshot_xmin(pg_current_snapshot()) as xmin) horizon
          left join sessions s
            on s.revoked_xid >= ${after ?? '0'}::xid8
           and s.access_until > now() - ${CLOCK_SKEW_ALLOWANCE}::interval`;
      const next = rows[0]?.next ?? after ?? '0';
      const sessions = rows.flatMap((row) =>
        row.id === null || row.access_until === null ? [] : [{ sessionId: row.id, accessUntil: row.access_until.toISOString() }],
      );
      return { sessions, next };
    }, undefined, false);
  }

  /**
   * Makes a token of the pre-session format the refresh credential of a session of its own, the
   * first time it is exchanged, if its user may still use it (an account from before sessions
   * that was never revoked). Afterwards it is a refresh credential like any other: its session's
   * end ends it, and the unique hash keeps it from making a second one. False when its signature
   * does not check.
   */
  private async adoptLegacy(token: string, hash: string, accessUntil: Date): Promise<boolean> {
    const userId = this.options.tokens.legacyUserId(token);
    if (userId === undefined) return false;
    await this.options.sql`
      with usable as (select id from users where id = ${userId} and legacy_token_usable for update)
      insert into sessions (id, user_id, refresh_hash, access_until)
      select ${this.options.newId()}, id, decode(${hash}, 'hex'), ${accessUntil} from usable
      on conflict (refresh_hash) do nothing`;
    return true;
  }

  private accessUntil(): Date {
    return new Date(this.now() + this.options.tokenTtlSeconds * 1000);
  }

  private access(userId: string, sessionId: string, accessUntil: Date): AccessToken {
    const expiresAtMs = accessUntil.getTime();
    return { token: this.options.tokens.sign({ userId, sessionId, expiresAtMs }), expiresAt: accessUntil.toISOString() };
  }
}
