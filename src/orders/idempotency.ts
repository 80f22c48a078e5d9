/**
 * Idempotency keys of purchases and payments, scoped to the buyer. A key is claimed (a row with
 * no answer yet) before the work starts and completed with the first definitive answer; a repeat
 * with the same request gets that answer back, a repeat while the first is still running gets
 * `IDEMPOTENCY_IN_PROGRESS`, and the same key for another request gets `IDEMPOTENCY_KEY_REUSED`.
 *
 * @remarks Answers that are not definitive (a 503, `CONTENTION`, a 5xx) are not stored: the claim
 * is dropped so the same key may retry. Keys are kept 24 hours, then removed by `cleanup`; a claim
 * whose request died without an answer can be taken over after `STALE_CLAIM` (so a crash does not
 * lock a key for a day).
 */
import { createHash } from 'node:crypto';
import type postgres from 'postgres';
import type { Sql } from '../infra/database.js';
import { DomainError } from '../infra/errors.js';

/** How long a definitive answer is replayed. */
export const KEY_RETENTION = '24 hours';
/** A claim older than this without an answer belongs to a request that died; it may be taken over. */
const STALE_CLAIM = '5 minutes';

export type IdempotencyClaim =
  | { readonly kind: 'claimed' }
  | { readonly kind: 'replay'; readonly statusCode: number; readonly response: unknown };

export interface IdempotencyStore {
  /**
   * Claims `key` for this request, or returns the stored answer of the same request. Throws
   * `IDEMPOTENCY_IN_PROGRESS` while the first is running, `IDEMPOTENCY_KEY_REUSED` for another request.
   */
  claim(buyerId: string, key: string, scope: string, requestHash: string): Promise<IdempotencyClaim>;
  /** Stores the definitive answer of a claimed key. */
  complete(buyerId: string, key: string, statusCode: number, response: unknown): Promise<void>;
  /** Drops a claim whose answer is not definitive, so the key may be retried. */
  abandon(buyerId: string, key: string): Promise<void>;
  /** Removes keys older than the retention; returns how many. */
  cleanup(): Promise<number>;
}

/** A stable digest of what makes two requests "the same": the scope (route, order) and the body. */
export function requestHash(scope: string, body: unknown): string {
  return createHash('sha256').update(`${scope}\n${stableJson(body)}`).digest('base64url');
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, member]) => member !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([name, member]) => `${JSON.stringify(name)}:${stableJson(member)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

interface KeyRow {
  request_hash: string;
  status_code: number | null;
  response: unknown;
}

export class PostgresIdempotencyStore implements IdempotencyStore {
  constructor(private readonly sql: Sql) {}

  async claim(buyerId: string, key: string, scope: string, hash: string): Promise<IdempotencyClaim> {
    // Twice at most: the row may be removed by the clean-up between the insert and the read.
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const [claimed] = await this.sql<{ claimed: boolean }[]>`
        insert into idempotency_keys as k (buyer_id, key, scope, request_hash)
        values (${buyerId}, ${key}, ${scope}, ${hash})
        on conflict (buyer_id, key) do update
          set scope = excluded.scope, request_hash = excluded.request_hash, status_code = null,
              response = null, created_at = now()
          where k.created_at < now() - ${KEY_RETENTION}::interval
             or (k.status_code is null and k.created_at < now() - ${STALE_CLAIM}::interval)
        returning true as claimed`;
      if (claimed) return { kind: 'claimed' };
      const [row] = await this.sql<KeyRow[]>`
        select request_hash, status_code, response from idempotency_keys where buyer_id = ${buyerId} and key = ${key}`;
      if (!row) continue;
      if (row.request_hash !== hash) {
        throw new DomainError('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different request', { key });
      }
      if (row.status_code === null) {
        throw new DomainError('IDEMPOTENCY_IN_PROGRESS', 'a request with this Idempotency-Key is still being handled', { key }, 1);
      }
      return { kind: 'replay', statusCode: row.status_code, response: row.response };
    }
    throw new DomainError('IDEMPOTENCY_IN_PROGRESS', 'this Idempotency-Key is changing hands; retry', { key }, 1);
  }

  async complete(buyerId: string, key: string, statusCode: number, response: unknown): Promise<void> {
    await this.sql`
      update idempotency_keys set status_code = ${statusCode}, response = ${this.sql.json(response as postgres.JSONValue)}
       where buyer_id = ${buyerId} and key = ${key} and status_code is null`;
  }

  async abandon(buyerId: string, key: string): Promise<void> {
    await this.sql`delete from idempotency_keys where buyer_id = ${buyerId} and key = ${key} and status_code is null`;
  }

  async cleanup(): Promise<number> {
    const result = await this.sql`delete from idempotency_keys where created_at < now() - ${KEY_RETENTION}::interval`;
    return result.count;
  }
}
