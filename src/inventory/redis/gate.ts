/**
 * The redis-lua gate: one Redis connection and the Lua scripts that decide, atomically and in
 * microseconds, who gets a unit of a product. Every step is one script on the product's keys
 * (`keys.ts`), idempotent by order id, with expiry judged by Redis `TIME`.
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
import { Redis, type RedisOptions } from 'ioredis';
import type { AllocationStatus, ProductChange, ReserveOutcome, ReserveRequest } from '../inventory.types.js';
import type { ConfirmOutcome, ReleasedAllocation, ReleaseStatus } from '../stock-strategy.js';
import { expectRefusal, refusalOf, type NotLoaded } from './codes.js';
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
}

/** What `load` writes: the terms, and for a rebuild the units each buyer holds or paid. */
export interface GateLoad extends GateTerms {
  readonly buyerUnits?: Readonly<Record<string, number>>;
}

/** An admin's change as the gate applies it: the product's change (its name is not the gate's), or the sale's end. */
export type GateChange = Omit<ProductChange, 'name'> & { readonly endedAt?: string | null };

export type GateReserveOutcome = ReserveOutcome | NotLoaded;
export type GateConfirmOutcome = ConfirmOutcome | NotLoaded;
export type GateReleaseOutcome =
  | { readonly ok: true; readonly released: ReleasedAllocation }
  | NotLoaded
  /** Nothing to release: no such hold, already settled, or (only-if-expired) not yet expired. */
  | { readonly ok: false; readonly reason: 'NOT_FOUND' | 'NOT_HELD' | 'NOT_EXPIRED' };
export type GateUpdateOutcome =
  | { readonly ok: true; readonly remaining: number; readonly stocked: number }
  | NotLoaded
  | { readonly ok: false; readonly reason: 'INVALID_STOCK_CHANGE'; readonly remaining: number };

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
}

const SCRIPTS = ['reserve', 'release', 'confirm', 'load', 'mark-absent', 'update'] as const;
type ScriptName = (typeof SCRIPTS)[number];
type Reply = readonly (string | number)[];
type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

const commandName = (script: ScriptName): string => `flashsale_${script.replace('-', '_')}`;

function source(script: ScriptName): string {
  return readFileSync(new URL(`./scripts/${script}.lua`, import.meta.url), 'utf8');
}

const ms = (iso: string): number => {
  const value = Date.parse(iso);
  if (Number.isNaN(value)) throw new Error(`not a date: "${iso}"`);
  return value;
};
const msOrEmpty = (iso: string | null): string => (iso === null ? '' : String(ms(iso)));
const num = (value: string | number | undefined): number => Number(value);
const str = (value: string | number | undefined): string => String(value);

export class RedisGate {
  private constructor(
    private readonly redis: Redis,
    readonly keys: GateKeys,
  ) {}

  /**
   * Connects, defines the scripts and loads each into Redis once (a script that does not compile
   * fails here, not on the first buyer). Close it with `close()`.
   */
  static async open(url: string, options: GateOptions = {}): Promise<RedisGate> {
    const redis = new Redis(url, {
      lazyConnect: true,
      // Reconnect quickly: a restarted Redis should be deciding again within half a second.
      retryStrategy: (times) => Math.min(times * 50, 500),
      // Every script is idempotent by order id, so a call resent after a reconnect is safe; a
      // bound keeps a caller from waiting through a long outage (it answers 503 instead).
      maxRetriesPerRequest: 2,
      ...options.redis,
    });
    try {
      await redis.connect();
      for (const script of SCRIPTS) {
        const lua = source(script);
        redis.defineCommand(commandName(script), { lua, numberOfKeys: 4 });
        await redis.script('LOAD', lua);
      }
    } catch (error) {
      redis.disconnect();
      throw error;
    }
    return new RedisGate(redis, new GateKeys(options.keyPrefix));
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

  /** Loads a product only when none of its keys exist; `false`: they are live, nothing changed. */
  async load(productId: string, terms: GateLoad): Promise<boolean> {
    const buyers = Object.entries(terms.buyerUnits ?? {}).flatMap(([buyer, units]) => [buyer, units]);
    const loaded = await this.run('load', productId, [
      terms.remaining,
      terms.stocked,
      terms.priceCents,
      terms.perBuyerLimit ?? '',
      terms.holdSeconds,
      ms(terms.opensAt),
      msOrEmpty(terms.closesAt),
      msOrEmpty(terms.endedAt),
      ...buyers,
    ]);
    return loaded === 1;
  }

  /**
   * Records for `ttlMs` that the product does not exist, so reserves answer `PRODUCT_NOT_FOUND`
   * from Redis; only when none of its keys exist. `load` replaces the mark.
   */
  async markAbsent(productId: string, ttlMs: number): Promise<boolean> {
    return (await this.run('mark-absent', productId, [ttlMs])) === 1;
  }

  /** Takes the units under the order id, or says why not (`NOT_LOADED`: rebuild, answer 503). */
  async reserve(request: ReserveRequest): Promise<GateReserveOutcome> {
    const reply = (await this.run('reserve', request.productId, [
      request.allocationId,
      request.buyerId,
      request.quantity,
    ])) as Reply;
    const code = num(reply[0]);
    if (code < 0) {
      return expectRefusal(refusalOf(code, num(reply[1])), 'reserve', [
        'NOT_LOADED',
        'PRODUCT_NOT_FOUND',
        'SALE_NOT_OPEN',
        'SALE_ENDED',
        'LIMIT_EXCEEDED',
        'SOLD_OUT',
      ]);
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
    const reply = (await this.run('release', productId, [allocationId, status, onlyIfExpired ? '1' : '0'])) as Reply;
    const code = num(reply[0]);
    if (code < 0) {
      return expectRefusal(refusalOf(code, 0), 'release', ['NOT_LOADED', 'NOT_FOUND', 'NOT_HELD', 'NOT_EXPIRED']);
    }
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

  /** Applies an admin's change to a loaded product. */
  async update(productId: string, change: GateChange): Promise<GateUpdateOutcome> {
    const fields: (string | number)[] = [];
    if (change.priceCents !== undefined) fields.push('price', change.priceCents);
    if (change.perBuyerLimit !== undefined) fields.push('limit', change.perBuyerLimit ?? '');
    if (change.holdSeconds !== undefined) fields.push('hold', change.holdSeconds);
    if (change.opensAt !== undefined) fields.push('opens', ms(change.opensAt));
    if (change.closesAt !== undefined) fields.push('closes', msOrEmpty(change.closesAt));
    if (change.endedAt !== undefined) fields.push('ended', msOrEmpty(change.endedAt));
    const reply = (await this.run('update', productId, [change.addStock ?? 0, ...fields])) as Reply;
    const code = num(reply[0]);
    if (code < 0) {
      return expectRefusal(refusalOf(code, num(reply[1])), 'update', ['NOT_LOADED', 'INVALID_STOCK_CHANGE']);
    }
    return { ok: true, remaining: num(reply[1]), stocked: num(reply[2]) };
  }

  /** Order ids of the product's holds past their expiry by Redis `TIME`, soonest first (for the sweeper). */
  async expiredHolds(productId: string, max: number): Promise<string[]> {
    const now = await this.now();
    return this.redis.zrangebyscore(this.keys.product(productId).expiries, '-inf', now, 'LIMIT', 0, max);
  }

  /**
   * Counts the product's units by state from its holds (O(holds): for audits and tests, not for
   * the hot path). `null`: not loaded.
   */
  async count(productId: string): Promise<GateCount | null> {
    const keys = this.keys.product(productId);
    const [terms, buyers, holds] = await Promise.all([
      this.redis.hmget(keys.terms, 'remaining', 'stocked'),
      this.redis.hgetall(keys.buyers),
      this.redis.hvals(keys.holds),
    ]);
    if (terms[0] === null || terms[0] === undefined) return null;
    const units = { held: 0, paid: 0, expired: 0, cancelled: 0 };
    for (const raw of holds) {
      const hold = JSON.parse(raw) as { q: number; s: keyof typeof units };
      units[hold.s] += hold.q;
    }
    const buyerUnits = Object.fromEntries(Object.entries(buyers).map(([buyer, n]) => [buyer, Number(n)]));
    return { remaining: Number(terms[0]), stocked: Number(terms[1]), ...units, buyerUnits };
  }

  private run(script: ScriptName, productId: string, args: readonly (string | number)[]): Promise<unknown> {
    const call = (this.redis as unknown as Record<string, ScriptCall | undefined>)[commandName(script)];
    if (!call) throw new Error(`the ${script} script is not defined`);
    return call.call(this.redis, ...this.keys.productKeyList(productId), ...args);
  }
}
