/**
 * `Idempotency-Key`s of purchases and payments, scoped to the buyer: the one place that reads or
 * writes their rows, for a key's whole life (hold in this process, claim, record with an order,
 * answer, replay, take-over, clean-up).
 *
 * A key keeps its request's first definitive outcome (the order, or a refusal) for
 * the key retention (`KEY_RETENTION_SECONDS`, a day by default): a repeat of the same request gets that outcome back (`replayed`), a repeat
 * while the first runs gets `IDEMPOTENCY_IN_PROGRESS`, the key for another request
 * `IDEMPOTENCY_KEY_REUSED`. An outcome that says to come back (`Retry-After`) or a fault is never
 * kept, so the same key may retry.
 *
 * How each request writes its key:
 * - A purchase writes its key once, with its outcome: a refusal through {@link answerFirst}
 *   (batched: a drop refuses thousands at once), an order in the statement that records the order
 *   (`OrderRecords`, batched with the others of that moment), so the two commit together. A purchase that finds its key answered meanwhile
 *   records nothing: its unit goes back and the kept outcome is replayed.
 * - A payment (and an instant purchase, between recording its order and paying it) claims its key
 *   first (a row with no outcome yet), then {@link complete}s it, or ends it without an outcome
 *   ({@link abandon}: a store failed around its step, or its answer said to come back), and a retry
 *   of the same request takes it over at once and resumes it. A claim left unanswered for
 *   {@link STALE_CLAIM_DEADLINES} store deadlines belongs to a request that died: a retry may take it over, unless it had
 *   recorded an order (then that order is the outcome). Every write under a claim names the
 *   claim's own id, so a request that stalled past a take-over writes nothing.
 * - A keyed purchase's order id comes from the key ({@link keyedOrderId}), so a retry after an
 *   unknown outcome goes on under the same order, with nothing written to bind them.
 *
 * @remarks Two requests with one key never run at once in this process ({@link hold}): the second
 * is told at once what the database would tell it. Across processes the database's row decides;
 * that rare race may refuse one of the two, never sells twice.
 */
import { hash as cryptoHash, randomUUID } from 'node:crypto';
import type postgres from 'postgres';
import type { Sql } from '../infra/database.js';
import { ERROR_CODES, refusal, type Refusal } from '../infra/errors.js';
import { GroupBatches } from '../infra/group-batches.js';
import { KEY_RETENTION_SECONDS } from '../infra/key-retention.js';
import type { CheckoutOutcome, Order } from './orders.client.js';

/**
 * How long a claim without an outcome stands before a retry may take it over, in store deadlines:
 * a request still running past its deadline is waiting on a store, and one whose process died
 * never ends its claim. Taking over early is safe (every write under a claim names the claim, and
 * each step is idempotent by the order id), so this only bounds how long a buyer whose attempt
 * died with its process is told `IDEMPOTENCY_IN_PROGRESS`.
 */
export const STALE_CLAIM_DEADLINES = 3;

/**
 * The order id of a keyed purchase: the same for every attempt with the key and body, a UUIDv8
 * made of the SHA-256 of buyer, key and request hash. An attempt that failed around a step whose
 * outcome is unknown leaves the key bound to its order without writing anything: the retry
 * reserves and records under the same id, which every step is idempotent by, so it finds the order
 * if it was made and goes on with it if it was not.
 *
 * @remarks The request's hash is in it: the key sent with another body is another request
 * (refused as reused), and must not find this one's allocation. Made with node's one-shot hash
 * rather than uuid's v5: the purchase path pays for it on every keyed buyer (~1 µs against ~7).
 */
export function keyedOrderId(held: Pick<HeldKey, 'buyerId' | 'key' | 'hash'>): string {
  const hex = cryptoHash('sha256', `${held.buyerId}\n${held.key}\n${held.hash}`, 'hex');
  // Version 8 (custom) in the 13th digit, the RFC 9562 variant (10xx) in the 17th.
  const variant = ((parseInt(hex.charAt(16), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** What a key keeps: its request's first definitive outcome. */
export type KeptOutcome = { readonly ok: true; readonly order: Order } | { readonly ok: false; readonly refusal: Refusal };

/** A key as the one request running with it in this process holds it. */
export interface HeldKey {
  readonly buyerId: string;
  readonly key: string;
  /** Tells this request's claim from one that took the key over after it went stale. */
  readonly claimId: string;
  /** `purchase`, or `pay:<order id>`: with the body, what makes two requests "the same". */
  readonly scope: string;
  readonly hash: string;
}

/** What claiming found: the key is this request's now, or it has an outcome to give instead. */
export type Claim =
  /** `resumed`: the key was taken over from an earlier attempt of this same request that ended without an outcome. */
  | { readonly claimed: true; readonly resumed: boolean }
  | { readonly claimed: false; readonly outcome: CheckoutOutcome };

/** A stable digest of what makes two requests "the same": the scope and the body. */
export function requestHash(scope: string, body: unknown): string {
  // The one-shot `hash` makes no Hash object: a third of `createHash`'s cost, once per keyed request.
  return cryptoHash('sha256', `${scope}\n${stableJson(body)}`, 'base64url');
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

const inProgress = (key: string, detail = 'a request with this Idempotency-Key is still being handled'): CheckoutOutcome => ({
  ok: false,
  refusal: refusal('IDEMPOTENCY_IN_PROGRESS', detail, { key }, 1),
});

const reused = (key: string): CheckoutOutcome => ({
  ok: false,
  refusal: refusal('IDEMPOTENCY_KEY_REUSED', 'this Idempotency-Key was used for a different request', { key }),
});

/** The HTTP status a successful outcome is answered with (a purchase creates, a payment does not). */
const successStatus = (scope: string): number => (scope === 'purchase' ? 201 : 200);

/** The HTTP status the outcome is answered with, kept beside it for whoever reads the table. */
const statusOf = (scope: string, outcome: KeptOutcome): number =>
  outcome.ok ? successStatus(scope) : ERROR_CODES[outcome.refusal.code].status;

interface NewClaim extends HeldKey {
  /** With an outcome, the key is written already answered: there is no work left. */
  readonly outcome: KeptOutcome | undefined;
}

interface NewAnswer extends HeldKey {
  readonly outcome: KeptOutcome;
}

interface KeyRow {
  request_hash: string;
  status_code: number | null;
  response: KeptOutcome | null;
  /** The order of a stale claim whose request recorded one, as the API shows it. */
  stale_order: Order | null;
}

const idOf = (item: { buyerId: string; key: string }): string => `${item.buyerId}\n${item.key}`;

export class IdempotencyKeys {
  /** Keys whose request runs in this process: `buyer\nkey` → the request's hash. */
  private readonly running = new Map<string, string>();
  /** Claims whose request ended without an outcome while the store was unreachable: `buyer\nkey` → claim. */
  private readonly abandoned = new Map<string, HeldKey>();
  private readonly claims = new GroupBatches<NewClaim, boolean>((claims) => this.insertClaims(claims));
  private readonly answers = new GroupBatches<NewAnswer, void>((answers) => this.storeAnswers(answers));

  /** A claim older than this many milliseconds without an outcome may be taken over. */
  private readonly staleClaimMs: number;

  /** How long a definitive outcome is replayed, as a PostgreSQL interval. */
  private readonly retention: string;

  constructor(
    private readonly sql: Sql,
    storeDeadlineMs: number,
    retentionSeconds: number = KEY_RETENTION_SECONDS,
  ) {
    this.staleClaimMs = STALE_CLAIM_DEADLINES * storeDeadlineMs;
    this.retention = `${retentionSeconds} seconds`;
  }

  /**
   * Marks the key as running in this process, or refuses as the database would if a request with
   * it runs here already. Call {@link letGo} when the request ends.
   */
  hold(buyerId: string, key: string, scope: string, body: unknown): HeldKey | CheckoutOutcome {
    const hash = requestHash(scope, body);
    const id = `${buyerId}\n${key}`;
    const other = this.running.get(id);
    if (other !== undefined) return other === hash ? inProgress(key) : reused(key);
    this.running.set(id, hash);
    return { buyerId, key, claimId: randomUUID(), scope, hash };
  }

  letGo(held: HeldKey): void {
    this.running.delete(idOf(held));
  }

  /** Claims the key for work that follows (a payment), or gives the outcome it has instead. */
  async claim(held: HeldKey): Promise<Claim> {
    const inserted = await this.claims.add({ ...held, outcome: undefined });
    return inserted ? { claimed: true, resumed: false } : this.claimExisting(held, undefined);
  }

  /**
   * Writes the key with its definitive outcome, unless it has one already: returns the outcome
   * the buyer gets (this one, or the kept one replayed).
   */
  async answerFirst(held: HeldKey, outcome: KeptOutcome): Promise<CheckoutOutcome> {
    const inserted = await this.claims.add({ ...held, outcome });
    if (inserted) return outcome;
    const claim = await this.claimExisting(held, outcome);
    return claim.claimed ? outcome : claim.outcome;
  }

  /** The key an order's record could not write (`OrderRecords`): the outcome it has, or why not yet. */
  async outcomeOf(held: HeldKey): Promise<CheckoutOutcome> {
    return (await this.existing(held)) ?? inProgress(held.key, 'this Idempotency-Key is changing hands; retry');
  }

  /** Keeps the definitive outcome of a claimed key (nothing, if the claim is no longer this one). */
  complete(held: HeldKey, outcome: KeptOutcome): Promise<void> {
    return this.answers.add({ ...held, outcome });
  }

  /**
   * Ends a claim without an outcome (the outcome was not definitive, or a store failed around the
   * step), so a retry of the same request takes the key over at once and resumes it. If the store
   * cannot be reached now, the claim is ended by {@link endAbandoned} as soon as it can, rather
   * than left to go stale.
   */
  async abandon(held: HeldKey): Promise<void> {
    try {
      await this.endClaim(held);
    } catch (error) {
      this.abandoned.set(idOf(held), held);
      throw error;
    }
  }

  /** Ends the claims that could not be ended when their request did (run by the sweeper). */
  async endAbandoned(): Promise<number> {
    let ended = 0;
    for (const [id, held] of this.abandoned) {
      await this.endClaim(held);
      this.abandoned.delete(id);
      ended += 1;
    }
    return ended;
  }

  private async endClaim(held: HeldKey): Promise<void> {
    await this.sql`
      update idempotency_keys set ended_at = now()
       where buyer_id = ${held.buyerId} and key = ${held.key} and claim_id = ${held.claimId} and status_code is null`;
  }

  /** Removes keys older than the retention; returns how many. */
  async cleanup(): Promise<number> {
    const result = await this.sql`delete from idempotency_keys where created_at < now() - ${this.retention}::interval`;
    return result.count;
  }

  /**
   * Of these keyed orders, the ids whose key another request holds in PostgreSQL (a row with
   * another request's hash that may not be written over). The gate binds a key before it grants,
   * but a Redis that lost the binding (restarted empty, evicted it) binds the key again for
   * whatever request comes: this row is what still knows.
   */
  async heldByAnotherRequest(orders: readonly { readonly id: string; readonly buyerId: string; readonly key: string; readonly hash: string }[]): Promise<Set<string>> {
    if (orders.length === 0) return new Set();
    const rows = orders.map((order) => ({ id: order.id, buyer_id: order.buyerId, key: order.key, request_hash: order.hash }));
    const found = await this.sql<{ id: string }[]>`
      select t.id from jsonb_to_recordset(${this.sql.json(rows)}::jsonb)
          as t(id uuid, buyer_id uuid, key text, request_hash text)
        join idempotency_keys k on k.buyer_id = t.buyer_id and k.key = t.key
       where k.request_hash <> t.request_hash and not (${this.takeable()})`;
    return new Set(found.map((row) => row.id));
  }

  /**
   * Whether a key row made at or before `instant` (ms) is still within the retention: a key a
   * Redis that lost its bindings at that instant may have forgotten, and only this table knows.
   */
  async keptFromBefore(instant: number): Promise<boolean> {
    const [row] = await this.sql<{ found: boolean }[]>`
      select exists (select 1 from idempotency_keys
                      where created_at <= to_timestamp(${instant / 1000}) and created_at >= now() - ${this.retention}::interval) as found`;
    return row?.found === true;
  }

  /**
   * What the key's row keeps for this very request (its hash), if it has one: a gate that lost
   * the key's binding may have bound the key to another request since, and refuse this one.
   */
  async keptForThisRequest(held: HeldKey): Promise<CheckoutOutcome | undefined> {
    const found = await this.existing(held);
    return found === undefined || (!found.ok && found.refusal.code === 'IDEMPOTENCY_KEY_REUSED') ? undefined : found;
  }

  /** A row (as `k`) that may be written over: past its retention, an ended claim, or a stale claim that recorded no order. */
  takeable(): postgres.PendingQuery<postgres.Row[]> {
    return this.sql`k.created_at < now() - ${this.retention}::interval
      or (k.status_code is null and k.ended_at is not null)
      or (k.status_code is null and k.order_id is null and k.created_at < now() - make_interval(secs => ${this.staleClaimMs / 1000}))`;
  }

  /**
   * Inserts every claim of a batch whose key is new, in one statement, each with its outcome if
   * it has one. Of two claims of one key in a batch only the first is sent: the later goes to the
   * one-key path once the statement is back, so the first keeps the key and the statement never
   * meets its own row. Rows go in key order, so two batches that share keys wait on each other
   * instead of deadlocking.
   */
  private async insertClaims(claims: readonly NewClaim[]): Promise<boolean[]> {
    const firstIndex = new Map<string, number>();
    claims.forEach((claim, index) => {
      if (!firstIndex.has(idOf(claim))) firstIndex.set(idOf(claim), index);
    });
    const rows = [...firstIndex.values()].map((index) => {
      const claim = claims[index] as NewClaim;
      return {
        buyer_id: claim.buyerId,
        key: claim.key,
        claim_id: claim.claimId,
        scope: claim.scope,
        request_hash: claim.hash,
        status_code: claim.outcome === undefined ? null : statusOf(claim.scope, claim.outcome),
        response: claim.outcome ?? null,
      };
    });
    const inserted = await this.sql<{ buyer_id: string; key: string }[]>`
      insert into idempotency_keys (buyer_id, key, claim_id, scope, request_hash, status_code, response)
      select buyer_id, key, claim_id, scope, request_hash, status_code, response
        from jsonb_to_recordset(${this.sql.json(rows as postgres.JSONValue)}::jsonb)
          as t(buyer_id uuid, key text, claim_id uuid, scope text, request_hash text, status_code integer, response jsonb)
       order by buyer_id, key
      on conflict (buyer_id, key) do nothing
      returning buyer_id, key`;
    const claimed = new Set(inserted.map((row) => idOf({ buyerId: row.buyer_id, key: row.key })));
    return claims.map((claim, index) => firstIndex.get(idOf(claim)) === index && claimed.has(idOf(claim)));
  }

  /** The key is there already: take it over if it may be, else give its outcome (or refuse). */
  private async claimExisting(held: HeldKey, outcome: KeptOutcome | undefined): Promise<Claim> {
    const statusCode = outcome === undefined ? null : statusOf(held.scope, outcome);
    const response = outcome === undefined ? null : this.sql.json(outcome as unknown as postgres.JSONValue);
    // Twice at most: the row may be removed by the clean-up between the insert and the read.
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const [claimed] = await this.sql<{ resumed: boolean }[]>`
        with earlier as (
          select ended_at is not null and request_hash = ${held.hash} as resumed
            from idempotency_keys where buyer_id = ${held.buyerId} and key = ${held.key})
        insert into idempotency_keys as k (buyer_id, key, claim_id, scope, request_hash, status_code, response)
        values (${held.buyerId}, ${held.key}, ${held.claimId}, ${held.scope}, ${held.hash}, ${statusCode}, ${response})
        on conflict (buyer_id, key) do update
          set claim_id = excluded.claim_id, scope = excluded.scope, request_hash = excluded.request_hash,
              status_code = excluded.status_code, response = excluded.response, order_id = null,
              ended_at = null, created_at = now()
          where ${this.takeable()}
        returning coalesce((select resumed from earlier), false) as resumed`;
      if (claimed) return { claimed: true, resumed: claimed.resumed };
      const found = await this.existing(held);
      if (found) return { claimed: false, outcome: found };
    }
    return { claimed: false, outcome: inProgress(held.key, 'this Idempotency-Key is changing hands; retry') };
  }

  /** What the key says to a request that found it taken; `undefined` when the row is gone. */
  private async existing(held: HeldKey): Promise<CheckoutOutcome | undefined> {
    const [row] = await this.sql<KeyRow[]>`
      select k.request_hash, k.status_code, k.response,
             case when k.status_code is null and k.created_at < now() - make_interval(secs => ${this.staleClaimMs / 1000})
                  then (select order_json(o) from orders o where o.id = k.order_id) end as stale_order
        from idempotency_keys k where k.buyer_id = ${held.buyerId} and k.key = ${held.key}`;
    if (!row) return undefined;
    if (row.request_hash !== held.hash) return reused(held.key);
    // Its request died after recording an order: that order is the outcome (never a second one).
    if (row.stale_order !== null) return { ok: true, order: row.stale_order, replayed: true };
    if (row.status_code === null || row.response === null) return inProgress(held.key);
    return { ...row.response, replayed: true };
  }

  /**
   * Keeps every outcome of a batch in one statement: when the last unit goes, the outcomes of
   * every buyer still in line arrive together. Each key belongs to the one request that claimed
   * it, so two batches never share a row; an outcome whose claim was taken over matches none.
   */
  private async storeAnswers(answers: readonly NewAnswer[]): Promise<void[]> {
    const rows = answers.map((answer) => ({
      buyer_id: answer.buyerId,
      key: answer.key,
      claim_id: answer.claimId,
      status_code: statusOf(answer.scope, answer.outcome),
      response: answer.outcome,
    }));
    await this.sql`
      update idempotency_keys k set status_code = t.status_code, response = t.response
        from jsonb_to_recordset(${this.sql.json(rows as unknown as postgres.JSONValue)}::jsonb)
          as t(buyer_id uuid, key text, claim_id uuid, status_code integer, response jsonb)
       where k.buyer_id = t.buyer_id and k.key = t.key and k.claim_id = t.claim_id and k.status_code is null`;
    return answers.map(() => undefined);
  }
}
