/**
 * The redis-lua gate: one Redis connection and the Lua scripts that decide, atomically and in
 * microseconds, who gets a unit of a product. Every step is one script on the product's keys
 * (`keys.ts`), idempotent by order id, with expiry judged by Redis `TIME`; a keyed reserve first
 * binds the buyer's `Idempotency-Key` to the request under the buyer's own key (see `reserve`).
 *
 * Not yet a `StockStrategy`: the strategy wraps it once the RabbitMQ pipeline makes its grants
 * durable (DESIGN.md, "Durability contract"). Unlike the strategy interface, `release` and
 * `confirm` take the product id too: every key of a hold lives under its product's hash tag.
 *
 * @remarks The client is ioredis: `defineCommand` calls each script by its SHA (EVALSHA) and, when
 * Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH), sends the script once more by EVAL, so
 * no caller handles a lost script cache; the same code runs on `Cluster`, routing each call by the
 * hash tag of its keys; and it reconnects on its own. It has no install script (npm ci needs no
 * `allowScripts` entry). node-redis offers much the same; BullMQ, whose Lua layout this follows,
 * runs on ioredis.
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { KEY_RETENTION_SECONDS } from '../../infra/key-retention.js';
import type { AllocationStatus, ProductChange, ReserveOutcome, ReserveRequest } from '../inventory.types.js';
import type { ConfirmOutcome, ReleasedAllocation, ReleaseStatus, SoldOutRefusal } from '../stock-strategy.js';
import { expectRefusal, refusalOf, SCRIPT_CODES, type GateRefusalReason, type NotLoaded } from './codes.js';
import { GateKeys } from './keys.js';

/** A product's terms as the gate keeps them (loaded from PostgreSQL, the truth). */
export interface GateTerms {
  /** Units free to buy. */
  readonly remaining: number;
  /** Units ever stocked. */
  readonly stocked: number;
  readonly priceCents: number;
  /** `null`: unlimited. */
  readonly perBuyerLimit: number | null;
  readonly holdSeconds: number;
  readonly opensAt: string;
  readonly closesAt: string | null;
  readonly endedAt: string | null;
  readonly accountsCreatedBefore: string | null;
  readonly requiresFunds: boolean;
}

/** A hold as the gate keeps it, by order id (a rebuild loads them from PostgreSQL's allocations). */
export interface GateHold {
  readonly orderId: string;
  readonly buyerId: string;
  readonly quantity: number;
  readonly amountCents: number;
  /** ms */
  readonly expiresAt: number;
  readonly status: AllocationStatus;
  /** When it was made (ms). */
  readonly madeAt: number;
}

/** What `load` writes: the terms, and for a rebuild the units each buyer holds or paid and every hold. */
export interface GateLoad extends GateTerms {
  readonly buyerUnits?: Readonly<Record<string, number>>;
  readonly holds?: readonly GateHold[];
}

/**
 * An admin's change as the gate applies it, every value absolute (so applying it again changes
 * nothing): the units stocked in all, the terms, the sale's end.
 */
export type GateChange = Omit<ProductChange, 'name' | 'addStock'> & { readonly stocked?: number; readonly endedAt?: string | null };

export type GateReserveOutcome = ReserveOutcome | NotLoaded;
export type GateConfirmOutcome = ConfirmOutcome | NotLoaded;
export type GateReleaseOutcome =
  | { readonly ok: true; readonly released: ReleasedAllocation }
  | NotLoaded
  /** Nothing to release: no such hold, or (only-if-expired) not yet expired. */
  | { readonly ok: false; readonly reason: 'NOT_FOUND' | 'NOT_EXPIRED' }
  /** Nothing to release: it is settled already, as `status`. */
  | { readonly ok: false; readonly reason: 'NOT_HELD'; readonly status: Exclude<AllocationStatus, 'held'> };
export type GateUpdateOutcome =
  /** Applied; `stale`: the gate has applied a newer version of the product already, nothing changed. */
  | { readonly ok: true; readonly remaining: number; readonly stocked: number; readonly stale: boolean }
  | NotLoaded
  /** The stock change was refused (in `check` mode nothing changed; otherwise the terms were applied). */
  | { readonly ok: false; readonly reason: 'INVALID_STOCK_CHANGE'; readonly remaining: number };

/**
 * How `update` treats what it is given (update.lua): `check` is all or nothing (before units are
 * taken away); `apply` applies the terms even when the stock change is refused, and ignores a
 * version older than the one applied; `force` (the resync under the row's lock) applies whatever
 * the version applied.
 */
export type GateUpdateMode = 'check' | 'apply' | 'force';

/** What a `load` did. */
export type GateLoadOutcome =
  /** Written: the product is loaded now. */
  | 'loaded'
  /** Nothing written: the product is loaded already. */
  | 'live'
  /** Nothing written: the product is partly present (a key lost); clear and rebuild it. */
  | 'partial'
  /** Nothing written: the rebuild lock is no longer this rebuild's. */
  | 'lock-lost';

/** Units of a product by state, counted from its holds (for audits and tests). */
export interface GateCount {
  readonly remaining: number;
  readonly stocked: number;
  readonly held: number;
  readonly paid: number;
  readonly expired: number;
  readonly cancelled: number;
  /** Units held or paid by buyer, as the limit counts them. */
  readonly buyerUnits: Readonly<Record<string, number>>;
}

export interface GateOptions {
  /** Prefix of every key (default `fs:`): tests and installs sharing a Redis each use their own. */
  readonly keyPrefix?: string;
  /** ioredis options, over the gate's defaults. */
  readonly redis?: RedisOptions;
  /** ioredis cluster options, over the gate's defaults (with a cluster target). */
  readonly cluster?: ClusterOptions;
  /** Told of each connection error (the client reconnects by itself meanwhile). */
  readonly onError?: (error: Error) => void;
  /**
   * How long an ended (cancelled or expired) hold stays in the product's `holds` after it ended,
   * in ms: the reconciler's horizon (`reconcilerHorizonMs`; default that of the default
   * `CONFIRM_TIMEOUT_MS`). A keyed hold stays at least the key retention after it was made.
   */
  readonly endedHoldsKeptMs?: number;
  /** How long a key's binding and kept refusal last, in seconds (default: PostgreSQL's key retention). */
  readonly keyRetentionSeconds?: number;
}

/** Where the gate's Redis is: one server's URL, or the seed nodes of a Redis Cluster. */
export type GateTarget = string | { readonly cluster: readonly { readonly host: string; readonly port: number }[] };

/** Every script of the gate, by the name of its file in scripts/. */
export const SCRIPTS = ['reserve', 'release', 'confirm', 'load', 'mark-absent', 'update', 'rebuild-begin', 'rebuild-holds', 'claim-key', 'keep-refusal', 'keyed-reserve'] as const;
/**
 * How many keys a script takes: a product's script the product's six (`GateKeys.productKeyList`),
 * and the scripts of a rebuild its lock as the seventh; a script on a buyer's key binding
 * (`GateKeys.keyBinding`) that one key; keyed-reserve the product's six and the binding.
 */
const SCRIPT_KEYS: Readonly<Record<(typeof SCRIPTS)[number], 1 | 6 | 7>> = {
  reserve: 6,
  release: 6,
  confirm: 6,
  load: 7,
  'mark-absent': 6,
  update: 6,
  'rebuild-begin': 7,
  'rebuild-holds': 7,
  'claim-key': 1,
  'keep-refusal': 1,
  'keyed-reserve': 7,
};
/** The reply of a rebuild step whose lock is no longer its own (the scripts' -17). */
const LOCK_LOST = -17;
/** 2 × the default `CONFIRM_TIMEOUT_MS`: the reconciler's horizon when the caller names none. */
const DEFAULT_ENDED_HOLDS_KEPT_MS = 10_000;
/**
 * The reserve refusals kept on a key's binding, so a retry of the request hears the same: the
 * definitive ones. Not the funds refusals (a top-up undoes them), nor not-loaded or not-found
 * (the product's keys are being rebuilt, or it has none: nothing was decided).
 */
const KEPT_REFUSALS: ReadonlySet<number> = new Set([
  SCRIPT_CODES.SALE_NOT_OPEN,
  SCRIPT_CODES.SALE_ENDED,
  SCRIPT_CODES.LIMIT_EXCEEDED,
  SCRIPT_CODES.SOLD_OUT,
  SCRIPT_CODES.ACCOUNT_TOO_NEW,
]);
/** {@link KEPT_REFUSALS} as keyed-reserve.lua takes them. */
const KEPT_REFUSALS_ARG = `,${[...KEPT_REFUSALS].join(',')},`;
/** What reserve.lua may refuse with; claim-key.lua answers the kept ones too. */
const RESERVE_REFUSALS = [
  'NOT_LOADED',
  'PRODUCT_NOT_FOUND',
  'SALE_NOT_OPEN',
  'SALE_ENDED',
  'ACCOUNT_TOO_NEW',
  'LIMIT_EXCEEDED',
  'SOLD_OUT',
  'FUNDS_UNKNOWN',
] as const satisfies readonly GateRefusalReason[];
const CLAIM_REFUSALS = ['SALE_NOT_OPEN', 'SALE_ENDED', 'ACCOUNT_TOO_NEW', 'LIMIT_EXCEEDED', 'SOLD_OUT', 'KEY_REUSED'] as const satisfies readonly GateRefusalReason[];
/** Holds read per HSCAN page by {@link RedisGate.count}. */
const HOLDS_SCAN_PAGE = 5_000;
export type ScriptName = (typeof SCRIPTS)[number];
/** A member of a product's hash or sorted set that marks the key as loaded (load.lua): no order, no buyer. */
export const MARKER = '~';
type Reply = readonly (string | number)[];
type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

const commandName = (script: ScriptName): string => `flashsale_${script.replaceAll('-', '_')}`;

/** Scripts only a single Redis runs (a cluster keeps a product's keys and a binding on two shards). */
export const SINGLE_REDIS_ONLY: ReadonlySet<ScriptName> = new Set(['keyed-reserve']);

/** The scripts that call `pruneEnded`, defined once in prune-ended.lua and put in front of each. */
const PRUNING: ReadonlySet<ScriptName> = new Set(['reserve', 'release', 'keyed-reserve']);
/**
 * Scripts that run others: each one named here is put in front of the script as a local function
 * `script_<name>` taking its own KEYS and ARGV (the parameters shadow the globals), so its body
 * runs unchanged inside the other.
 */
const COMPOSED: Readonly<Partial<Record<ScriptName, readonly ScriptName[]>>> = {
  'keyed-reserve': ['claim-key', 'reserve', 'keep-refusal'],
};

function read(name: string): string {
  return readFileSync(new URL(`./scripts/${name}.lua`, import.meta.url), 'utf8');
}

/** The Lua the gate sends Redis for `script` (what its SHA is of). */
export function scriptSource(script: ScriptName): string {
  const parts = PRUNING.has(script) ? [read('prune-ended')] : [];
  for (const inner of COMPOSED[script] ?? []) parts.push(`local function script_${inner.replaceAll('-', '_')}(KEYS, ARGV)\n${read(inner)}\nend`);
  parts.push(read(script));
  return parts.join('\n');
}

const ms = (iso: string): number => {
  const value = Date.parse(iso);
  if (Number.isNaN(value)) throw new Error(`not a date: "${iso}"`);
  return value;
};
const msOrEmpty = (iso: string | null): string => (iso === null ? '' : String(ms(iso)));
const num = (value: string | number | undefined): number => Number(value);

/** A hold as load.lua and rebuild-holds.lua take it: its order id, and its JSON fields. */
function holdAsLoaded(hold: GateHold): { id: string; b: string; q: number; a: number; e: number; s: AllocationStatus; t: number } {
  return { id: hold.orderId, b: hold.buyerId, q: hold.quantity, a: hold.amountCents, e: hold.expiresAt, s: hold.status, t: hold.madeAt };
}
const str = (value: string | number | undefined): string => String(value);

/** How long a process trusts its reading of `bindings-since`. */
const BINDINGS_SINCE_READ_MS = 1_000;

export class RedisGate {
  private readonly endedHoldsKeptMs: number;
  private readonly keyRetentionSeconds: number;
  /** The last reading of `bindings-since`, and when it was taken (ms, this process's clock). */
  private bindingsRead: { readonly since: Promise<number>; readonly at: number } | undefined;

  private constructor(
    private readonly redis: Redis | Cluster,
    readonly keys: GateKeys,
    options: GateOptions,
  ) {
    this.endedHoldsKeptMs = options.endedHoldsKeptMs ?? DEFAULT_ENDED_HOLDS_KEPT_MS;
    this.keyRetentionSeconds = options.keyRetentionSeconds ?? KEY_RETENTION_SECONDS;
  }

  /**
   * Connects, defines the scripts and loads each into Redis once (a script that does not compile
   * fails here, not on the first buyer). Close it with `close()`.
   */
  static async open(target: GateTarget, options: GateOptions = {}): Promise<RedisGate> {
    // Reconnect quickly: a restarted Redis should be deciding again within half a second.
    const retryStrategy = (times: number): number => Math.min(times * 50, 500);
    const redis =
      typeof target === 'string'
        ? new Redis(target, {
            lazyConnect: true,
            retryStrategy,
            // Every script is idempotent by order id, so a call resent after a reconnect is safe; a
            // bound keeps a caller from waiting through a long outage (it answers 503 instead).
            maxRetriesPerRequest: 2,
            // The calls of one event-loop turn go in one write: under a storm, one syscall (here and
            // in Redis) for many buyers instead of one each.
            enableAutoPipelining: true,
            ...options.redis,
          })
        : new Cluster([...target.cluster], {
            lazyConnect: true,
            clusterRetryStrategy: retryStrategy,
            enableAutoPipelining: true,
            redisOptions: { maxRetriesPerRequest: 2, ...options.redis },
            ...options.cluster,
          });
    // Without a listener ioredis prints every failed reconnect attempt; the caller decides what to say.
    redis.on('error', (error: Error) => options.onError?.(error));
    try {
      await redis.connect();
      // On a cluster every master needs the scripts; EVALSHA falls back to EVAL on NOSCRIPT anyway,
      // so loading them here only moves a script that does not compile to start-up.
      const servers = redis instanceof Cluster ? redis.nodes('master') : [redis];
      for (const script of SCRIPTS) {
        if (redis instanceof Cluster && SINGLE_REDIS_ONLY.has(script)) continue;
        const lua = scriptSource(script);
        redis.defineCommand(commandName(script), { lua, numberOfKeys: SCRIPT_KEYS[script] });
        for (const server of servers) await server.script('LOAD', lua);
      }
    } catch (error) {
      redis.disconnect();
      throw error;
    }
    const gate = new RedisGate(redis, new GateKeys(options.keyPrefix), options);
    // Stamped at once: a new install's mark then comes before every binding it makes.
    await gate.bindingsSince().catch(() => undefined);
    return gate;
  }

  /**
   * Since when (ms) this Redis has held every `Idempotency-Key` binding the gate made: the instant
   * it was first found without its `bindings-since` mark (a Redis restarted empty or flushed loses
   * the mark with the bindings). A key used before it may have lost its binding. Read at most once
   * a second per process, or now with `fresh` (a rebuild reads it before it loads a product, so the
   * rebuilding process knows of a lost Redis before the product sells again).
   */
  bindingsSince(fresh = false): Promise<number> {
    const read = this.bindingsRead;
    if (!fresh && read !== undefined && Date.now() - read.at < BINDINGS_SINCE_READ_MS) return read.since;
    const since = this.readBindingsSince();
    this.bindingsRead = { since, at: Date.now() };
    // A failed reading is not kept: the next call reads again.
    since.catch(() => {
      if (this.bindingsRead?.since === since) this.bindingsRead = undefined;
    });
    return since;
  }

  private async readBindingsSince(): Promise<number> {
    const key = this.keys.bindingsSince();
    const found = await this.redis.get(key);
    if (found !== null) return Number(found);
    await this.redis.set(key, String(await this.now()), 'NX');
    return Number(await this.redis.get(key));
  }

  /** Whether the connection is up now: a call made while it is not would wait or fail, so 503 at once. */
  get ready(): boolean {
    return this.redis.status === 'ready';
  }

  /** Answers when Redis does (for `/readyz`). */
  async ping(): Promise<void> {
    await this.redis.ping();
  }

  /**
   * Takes the lock the product's keys are rebuilt under (`SET NX PX`), or `false` if another
   * process holds it. It only spares duplicate work: `load` writes nothing over live keys anyway.
   */
  async lockRebuild(productId: string, token: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.set(this.keys.rebuildLock(productId), token, 'PX', ttlMs, 'NX')) === 'OK';
  }

  async unlockRebuild(productId: string, token: string): Promise<void> {
    const key = this.keys.rebuildLock(productId);
    // Not atomic, and need not be: a lock taken by another process meanwhile guards nothing that
    // `load`'s own check does not.
    if ((await this.redis.get(key)) === token) await this.redis.del(key);
  }

  /** Units free to buy now; `null`: not loaded. */
  async remaining(productId: string): Promise<number | null> {
    const value = await this.redis.hget(this.keys.product(productId).terms, 'remaining');
    return value === null ? null : Number(value);
  }

  /**
   * For the reconciler: up to `max` of the product's holds made before `beforeMs` that it has not
   * looked up in PostgreSQL yet (`ids`, oldest first), and of those the ones still `held` (`held`).
   * Work per call is bounded by `max` and by the holds of the last confirm timeout, never by every
   * hold the product ever had: a hold leaves the set once the reconciler has looked it up
   * ({@link forgetChecked}).
   */
  async uncheckedBefore(
    productId: string,
    beforeMs: number,
    max: number,
  ): Promise<{ readonly ids: readonly string[]; readonly held: readonly { readonly orderId: string; readonly hold: GateHold }[] }> {
    const keys = this.keys.product(productId);
    // The marker member '~' is no hold.
    const ids = (await this.redis.zrangebyscore(keys.unchecked, '-inf', `(${beforeMs}`, 'LIMIT', 0, max + 1))
      .filter((id) => id !== MARKER)
      .slice(0, max);
    if (ids.length === 0) return { ids, held: [] };
    const raws = await this.redis.hmget(keys.holds, ...ids);
    const held: { orderId: string; hold: GateHold }[] = [];
    ids.forEach((orderId, index) => {
      const raw = raws[index];
      // Gone (ended and pruned, or the keys were rebuilt from PostgreSQL) or ended in the gate: nothing to return.
      if (raw === null || raw === undefined) return;
      const h = JSON.parse(raw) as { b: string; q: number; a: number; e: number; s: string; t?: number };
      if (h.s !== 'held') return;
      held.push({
        orderId,
        hold: { orderId, buyerId: h.b, quantity: h.q, amountCents: h.a, expiresAt: h.e, status: 'held', madeAt: h.t ?? 0 },
      });
    });
    return { ids, held };
  }

  /**
   * These holds' orders are durable in the broker (confirmed): they will reach PostgreSQL, so the
   * reconciler must never void them. One call per product (a product's keys share one shard).
   */
  async published(orders: readonly { readonly productId: string; readonly orderId: string }[]): Promise<void> {
    const byProduct = new Map<string, string[]>();
    for (const { productId, orderId } of orders) {
      const ids = byProduct.get(productId);
      if (ids === undefined) byProduct.set(productId, [orderId]);
      else ids.push(orderId);
    }
    await Promise.all([...byProduct].map(([productId, ids]) => this.forgetChecked(productId, ids)));
  }

  /** The reconciler has looked these holds up in PostgreSQL (found, or voided and returned). */
  async forgetChecked(productId: string, ids: readonly string[]): Promise<void> {
    if (ids.length > 0) await this.redis.zrem(this.keys.product(productId).unchecked, ...ids);
  }

  /** Closes the connection (waits for replies to calls already sent). */
  async close(): Promise<void> {
    await this.redis.quit();
  }

  /** Redis's clock, in ms: the one every expiry is judged by. */
  async now(): Promise<number> {
    const [seconds, micros] = await this.redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  /**
   * Writes the product's terms (and any buyers' units and holds given) and the markers that make
   * it loaded. A first load (no `rebuildToken`) writes only when none of its keys exist; the last
   * step of a rebuild only while the rebuild lock is still its token's. `version`: the product
   * row's version the terms were read at.
   */
  async load(productId: string, terms: GateLoad, version = 0, rebuildToken = ''): Promise<GateLoadOutcome> {
    const holds = (terms.holds ?? []).map(holdAsLoaded);
    const loaded = await this.run('load', productId, [
      terms.remaining,
      terms.stocked,
      terms.priceCents,
      terms.perBuyerLimit ?? '',
      terms.holdSeconds,
      ms(terms.opensAt),
      msOrEmpty(terms.closesAt),
      msOrEmpty(terms.endedAt),
      terms.buyerUnits === undefined ? '' : JSON.stringify(terms.buyerUnits),
      holds.length === 0 ? '' : JSON.stringify(holds),
      msOrEmpty(terms.accountsCreatedBefore),
      terms.requiresFunds ? '1' : '',
      version,
      rebuildToken,
      this.keyRetentionSeconds * 1000,
    ]);
    switch (loaded) {
      case 1:
        return 'loaded';
      case 0:
        return 'live';
      case -1:
        return 'partial';
      case LOCK_LOST:
        return 'lock-lost';
      default:
        throw new Error(`the load script answered the unknown code ${String(loaded)}`);
    }
  }

  /** A rebuild's first step: clears every key of the product; `false`: the lock is not `token`'s. */
  async rebuildBegin(productId: string, token: string): Promise<boolean> {
    return (await this.run('rebuild-begin', productId, [token])) === 1;
  }

  /**
   * Writes one page of a rebuild's holds and keeps the lock `lockTtlMs` longer; `false`: the lock
   * is not `token`'s (nothing written).
   */
  async rebuildHolds(productId: string, token: string, lockTtlMs: number, holds: readonly GateHold[]): Promise<boolean> {
    const page = holds.map(holdAsLoaded);
    return (await this.run('rebuild-holds', productId, [token, JSON.stringify(page), lockTtlMs, this.keyRetentionSeconds * 1000])) !== LOCK_LOST;
  }

  /** Whether the product is loaded: its terms and every other key's marker are there. */
  async isLoaded(productId: string): Promise<boolean> {
    const keys = this.keys.product(productId);
    const [terms, others] = await Promise.all([
      this.redis.hexists(keys.terms, 'remaining'),
      this.redis.exists(keys.buyers, keys.holds, keys.expiries, keys.ended, keys.unchecked),
    ]);
    return terms === 1 && others === 5;
  }

  /**
   * Records for `ttlMs` that the product does not exist, so reserves answer `PRODUCT_NOT_FOUND`
   * from Redis; only when none of its keys exist. `load` replaces the mark.
   */
  async markAbsent(productId: string, ttlMs: number): Promise<boolean> {
    return (await this.run('mark-absent', productId, [ttlMs])) === 1;
  }

  /**
   * Takes the units under the order id, or says why not (`NOT_LOADED`: rebuild, answer 503).
   * With the request's `Idempotency-Key`, first binds the key to the request (the order id) on
   * every product: a key bound to another request is refused (`KEY_REUSED`, nothing changed), a
   * key with a kept refusal gets it again, and a definitive refusal of the product is kept on the
   * binding. `soldOut`: this process knows the product has nothing left; an unkeyed request is
   * refused with it at once, and a keyed one is answered by its binding (bound now with the
   * refusal, if it was not bound), never by the product's script, unless the key's request was
   * granted before (then its hold is the answer).
   *
   * @remarks The binding lives under the buyer's hash tag and the product's keys under the
   * product's. On a single Redis the three steps (bind, reserve, keep a refusal) are one script,
   * keyed-reserve.lua: one round trip, and atomic. In Redis Cluster they are on two shards, so
   * three calls in that order: bind first, then reserve, then keep a refusal. A crash after the
   * binding leaves a key bound to a request that took nothing: its retry reserves under the same
   * order id, and any other request is refused, so nothing is sold twice and no unit is lost. A
   * crash after the reserve leaves the grant under the bound order id (the retry finds it; the
   * reconciler returns it if it never reaches PostgreSQL). Reserving first would let a crash leave
   * a hold whose key another request could then bind and buy with. A crash before a refusal is
   * kept left no one told it: the retry decides again.
   */
  async reserve(request: ReserveRequest, soldOut?: SoldOutRefusal): Promise<GateReserveOutcome> {
    const key = request.idempotencyKey;
    if (key === undefined) return soldOut ?? this.reserveOutcome(request, await this.reserveReply(request, false));
    const binding = this.keys.keyBinding(request.buyerId, key);
    const keep = soldOut === undefined ? '' : SCRIPT_CODES.SOLD_OUT;
    const keepDetail = soldOut?.remaining ?? 0;
    let claimed: Reply;
    let reply: Reply | undefined;
    if (this.redis instanceof Cluster) {
      claimed = (await this.runOn('claim-key', [binding], [request.allocationId, this.keyRetentionSeconds, keep, keepDetail])) as Reply;
      if (num(claimed[0]) >= 0) {
        reply = await this.reserveReply(request, true);
        const code = num(reply[0]);
        if (KEPT_REFUSALS.has(code)) {
          await this.runOn('keep-refusal', [binding], [request.allocationId, code, num(reply[1]), this.keyRetentionSeconds]);
        }
      }
    } else {
      const both = (await this.runOn('keyed-reserve', [...this.keys.productKeyList(request.productId), binding], [
        ...this.reserveArgs(request, true),
        this.keyRetentionSeconds,
        keep,
        keepDetail,
        KEPT_REFUSALS_ARG,
      ])) as Reply;
      claimed = both;
      if (num(both[0]) >= 0) reply = both.slice(1);
    }
    if (reply === undefined) {
      const refused = expectRefusal(refusalOf(num(claimed[0]), num(claimed[1])), 'claim-key', CLAIM_REFUSALS);
      // Kept earlier: not the product's word now, so no sold-out hint may be learnt from it.
      return refused.reason === 'SOLD_OUT' && claimed[2] !== undefined ? { ...refused, again: true } : refused;
    }
    const outcome = this.reserveOutcome(request, reply);
    // A first grant under the key (bound by this request now, or by an attempt of it refused
    // 503 before): whether an earlier use of the key lost its binding is for the caller to ask
    // PostgreSQL, which it need only do for a while after `bindingsSince`.
    return outcome.ok && outcome.again !== true ? { ...outcome, keyBoundSince: await this.bindingsSince() } : outcome;
  }

  private reserveArgs(request: ReserveRequest, keyed: boolean): (string | number)[] {
    return [request.allocationId, request.buyerId, request.quantity, keyed ? '1' : '', request.spendableCents ?? ''];
  }

  private async reserveReply(request: ReserveRequest, keyed: boolean): Promise<Reply> {
    return (await this.run('reserve', request.productId, this.reserveArgs(request, keyed))) as Reply;
  }


  /** reserve.lua's reply as the outcome. */
  private reserveOutcome(request: ReserveRequest, reply: Reply): GateReserveOutcome {
    const code = num(reply[0]);
    if (code < 0) {
      if (code === SCRIPT_CODES.INSUFFICIENT_FUNDS) {
        return { ok: false, reason: 'INSUFFICIENT_FUNDS', amountCents: num(reply[1]), spendableCents: request.spendableCents ?? 0 };
      }
      return expectRefusal(refusalOf(code, num(reply[1])), 'reserve', RESERVE_REFUSALS);
    }
    const [, remaining, amount, expires, status, buyer, quantity] = reply;
    return {
      ok: true,
      allocation: {
        id: request.allocationId,
        productId: request.productId,
        buyerId: str(buyer),
        quantity: num(quantity),
        amountCents: num(amount),
        status: str(status) as AllocationStatus,
        expiresAt: new Date(num(expires)).toISOString(),
      },
      remaining: num(remaining),
      ...(code === 2 ? { again: true } : {}),
    };
  }

  /**
   * Ends a held hold as `status` and gives its units back (to stock and to the buyer's count);
   * with `onlyIfExpired`, only once its expiry has passed by Redis `TIME`.
   */
  async release(
    productId: string,
    allocationId: string,
    status: ReleaseStatus,
    onlyIfExpired: boolean,
  ): Promise<GateReleaseOutcome> {
    const reply = (await this.run('release', productId, [
      allocationId,
      status,
      onlyIfExpired ? '1' : '0',
      this.endedHoldsKeptMs,
      this.keyRetentionSeconds * 1000,
    ])) as Reply;
    const code = num(reply[0]);
    if (code === SCRIPT_CODES.NOT_HELD) return { ok: false, reason: 'NOT_HELD', status: str(reply[1]) as Exclude<AllocationStatus, 'held'> };
    if (code < 0) return expectRefusal(refusalOf(code, 0), 'release', ['NOT_LOADED', 'NOT_FOUND', 'NOT_EXPIRED']);
    return { ok: true, released: { productId, buyerId: str(reply[1]), quantity: num(reply[2]) } };
  }

  /** Turns a held hold into a sale, unless it was cancelled or expired by Redis `TIME`. */
  async confirm(productId: string, allocationId: string): Promise<GateConfirmOutcome> {
    const reply = (await this.run('confirm', productId, [allocationId])) as Reply;
    const code = num(reply[0]);
    if (code < 0) {
      return expectRefusal(refusalOf(code, 0), 'confirm', ['NOT_LOADED', 'NOT_FOUND', 'EXPIRED', 'CANCELLED']);
    }
    const [, amount, expires, status, buyer, quantity] = reply;
    return {
      ok: true,
      allocation: {
        id: allocationId,
        productId,
        buyerId: str(buyer),
        quantity: num(quantity),
        amountCents: num(amount),
        status: str(status) as 'paid',
        expiresAt: new Date(num(expires)).toISOString(),
      },
    };
  }

  /** Applies PostgreSQL's values of the product, read at the row's `version`, to its loaded copy (see {@link GateUpdateMode}). */
  async update(productId: string, change: GateChange, version: number, mode: GateUpdateMode): Promise<GateUpdateOutcome> {
    const fields: (string | number)[] = [];
    const stocked = change.stocked ?? '';
    if (change.priceCents !== undefined) fields.push('price', change.priceCents);
    if (change.perBuyerLimit !== undefined) fields.push('limit', change.perBuyerLimit ?? '');
    if (change.holdSeconds !== undefined) fields.push('hold', change.holdSeconds);
    if (change.opensAt !== undefined) fields.push('opens', ms(change.opensAt));
    if (change.closesAt !== undefined) fields.push('closes', msOrEmpty(change.closesAt));
    if (change.endedAt !== undefined) fields.push('ended', msOrEmpty(change.endedAt));
    if (change.accountsCreatedBefore !== undefined) fields.push('accounts', msOrEmpty(change.accountsCreatedBefore));
    if (change.requiresFunds !== undefined) fields.push('funds', change.requiresFunds ? '1' : '');
    const reply = (await this.run('update', productId, [version, mode, stocked, ...fields])) as Reply;
    const code = num(reply[0]);
    if (code < 0) {
      return expectRefusal(refusalOf(code, num(reply[1])), 'update', ['NOT_LOADED', 'INVALID_STOCK_CHANGE']);
    }
    return { ok: true, remaining: num(reply[1]), stocked: num(reply[2]), stale: code === 3 };
  }

  /** Order ids of the product's holds past their expiry by Redis `TIME`, soonest first (for the sweeper). */
  async expiredHolds(productId: string, max: number): Promise<string[]> {
    const now = await this.now();
    const due = await this.redis.zrangebyscore(this.keys.product(productId).expiries, '-inf', now, 'LIMIT', 0, max + 1);
    return due.filter((id) => id !== MARKER).slice(0, max);
  }

  /**
   * Counts the product's units by state from its holds (O(holds): for audits and tests, not for
   * the hot path), with the units of ended holds pruned from them. `null`: not loaded.
   */
  async count(productId: string): Promise<GateCount | null> {
    const keys = this.keys.product(productId);
    const [terms, buyers] = await Promise.all([
      this.redis.hmget(keys.terms, 'remaining', 'stocked', 'pruned_cancelled', 'pruned_expired'),
      this.redis.hgetall(keys.buyers),
    ]);
    if (terms[0] === null || terms[0] === undefined) return null;
    const units: Record<AllocationStatus, number> = { held: 0, paid: 0, expired: Number(terms[3] ?? 0), cancelled: Number(terms[2] ?? 0) };
    // Scanned a few thousand at a time: a product with many live holds (a big stock) and the
    // holds of the last horizon would make one reply that stalls Redis and this process.
    for await (const page of this.redis.hscanStream(keys.holds, { count: HOLDS_SCAN_PAGE })) {
      const fieldsAndValues = page as string[];
      for (let i = 0; i + 1 < fieldsAndValues.length; i += 2) {
        if (fieldsAndValues[i] === MARKER) continue;
        const hold = JSON.parse(fieldsAndValues[i + 1] as string) as { q: number; s: AllocationStatus | 'refused' };
        // 'refused': a keyed refusal an older version kept among the holds, no units.
        if (hold.s !== 'refused') units[hold.s] += hold.q;
      }
    }
    const buyerUnits = Object.fromEntries(
      Object.entries(buyers)
        .filter(([buyer]) => buyer !== MARKER)
        .map(([buyer, n]) => [buyer, Number(n)]),
    );
    return { remaining: Number(terms[0]), stocked: Number(terms[1]), ...units, buyerUnits };
  }

  /**
   * The buyer and status of the hold under the order id (`null`: none, or a kept refusal), by one
   * field of the product's holds (HGET): what a payment of an order the consumer has not written
   * yet asks, without a scan.
   */
  async hold(productId: string, orderId: string): Promise<{ readonly buyerId: string; readonly status: AllocationStatus } | null> {
    const raw = await this.redis.hget(this.keys.product(productId).holds, orderId);
    if (raw === null) return null;
    const hold = JSON.parse(raw) as { b?: string; s: AllocationStatus | 'refused' };
    return hold.s === 'refused' || hold.b === undefined ? null : { buyerId: hold.b, status: hold.s };
  }

  /**
   * Of these order ids (holds PostgreSQL has held or paid), those the gate does not count against
   * the product's stock: no hold under the id, or one it has ended. Read a page of ids
   * at a time (for the audit, not the hot path).
   */
  async holdsNotCounted(productId: string, orderIds: readonly string[]): Promise<string[]> {
    const { holds } = this.keys.product(productId);
    const missing: string[] = [];
    for (let start = 0; start < orderIds.length; start += HOLDS_SCAN_PAGE) {
      const page = orderIds.slice(start, start + HOLDS_SCAN_PAGE);
      const raws = await this.redis.hmget(holds, ...page);
      page.forEach((orderId, index) => {
        const raw = raws[index];
        const status = raw === null || raw === undefined ? undefined : (JSON.parse(raw) as { s: string }).s;
        if (status !== 'held' && status !== 'paid') missing.push(orderId);
      });
    }
    return missing;
  }

  /**
   * The product's units stocked and remaining (`null`: not loaded). What is neither is held or
   * paid (`stocked = remaining + held + paid`, every script keeps it so): the reconciler's figures,
   * read in O(1), where {@link count} reads every hold.
   */
  async stockFigures(productId: string): Promise<{ readonly remaining: number; readonly stocked: number } | null> {
    const keys = this.keys.product(productId);
    const [[remaining, stocked], others] = await Promise.all([
      this.redis.hmget(keys.terms, 'remaining', 'stocked'),
      this.redis.exists(keys.buyers, keys.holds, keys.expiries, keys.ended, keys.unchecked),
    ]);
    if (remaining === null || remaining === undefined || others < 5) return null;
    return { remaining: Number(remaining), stocked: Number(stocked) };
  }

  /** Runs a product's script on the product's keys (and, for a rebuild's, its lock). */
  private run(script: ScriptName, productId: string, args: readonly (string | number)[]): Promise<unknown> {
    const keys = this.keys.productKeyList(productId);
    return this.runOn(script, SCRIPT_KEYS[script] === 7 ? [...keys, this.keys.rebuildLock(productId)] : keys, args);
  }

  private runOn(script: ScriptName, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const call = (this.redis as unknown as Record<string, ScriptCall | undefined>)[commandName(script)];
    if (!call) throw new Error(`the ${script} script is not defined`);
    return call.call(this.redis, ...keys, ...args);
  }
}
