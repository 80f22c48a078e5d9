/**
 * The redis-lua gate against a real Redis (127.0.0.1:6379, or TEST_REDIS_URL): every refusal,
 * idempotency by order id, release and expiry judged by Redis TIME, confirm, loads that never
 * overwrite live counters, an Idempotency-Key bound across products with its kept refusal
 * expiring, ended holds pruned after the horizon, and a 2,000-buyer storm. Keys live under a
 * random prefix, deleted after.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReserveRequest } from '../src/inventory/inventory.types.js';
import { KEY_RETENTION_SECONDS } from '../src/infra/key-retention.js';
import { RedisGate, type GateHold, type GateLoad } from '../src/inventory/redis/gate.js';

const REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
const PREFIX = `test:gate:${randomUUID().slice(0, 8)}:`;

let gate: RedisGate;
/** A plain connection, to look at what the gate stores. */
let look: Redis;
beforeAll(async () => {
  gate = await RedisGate.open(REDIS_URL, { keyPrefix: PREFIX });
  look = new Redis(REDIS_URL);
});
afterAll(async () => {
  await gate?.close();
  await look?.quit();
  const redis = new Redis(REDIS_URL);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await redis.quit();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const hourAgo = (): string => new Date(Date.now() - 3_600_000).toISOString();
const inAnHour = (): string => new Date(Date.now() + 3_600_000).toISOString();

/** Loads a fresh product (open since an hour ago) and returns its id. */
async function product(terms: Partial<GateLoad> = {}): Promise<string> {
  const id = randomUUID();
  const stock = terms.stocked ?? 10;
  const loaded = await gate.load(id, {
    remaining: stock,
    stocked: stock,
    priceCents: 250,
    perBuyerLimit: null,
    holdSeconds: 300,
    opensAt: hourAgo(),
    closesAt: null,
    endedAt: null,
    accountsCreatedBefore: null,
    requiresFunds: false,
    ...terms,
  });
  expect(loaded).toBe('loaded');
  return id;
}

const request = (productId: string, buyerId: string = randomUUID(), quantity = 1): ReserveRequest => ({
  allocationId: randomUUID(),
  productId,
  buyerId,
  quantity,
});

describe('reserve', () => {
  it('holds the units at the price, expiring hold seconds after Redis TIME', async () => {
    const id = await product({ stocked: 5, holdSeconds: 120 });
    const before = await gate.now();
    const asked = request(id, 'buyer-1', 2);
    const outcome = await gate.reserve(asked);
    const after = await gate.now();

    expect(outcome).toMatchObject({ ok: true, remaining: 3 });
    if (!outcome.ok) throw new Error('refused');
    expect(outcome.allocation).toMatchObject({
      id: asked.allocationId,
      productId: id,
      buyerId: 'buyer-1',
      quantity: 2,
      amountCents: 500,
      status: 'held',
    });
    const expires = Date.parse(outcome.allocation.expiresAt);
    expect(expires).toBeGreaterThanOrEqual(before + 120_000);
    expect(expires).toBeLessThanOrEqual(after + 120_000);
    expect(await gate.count(id)).toMatchObject({ remaining: 3, stocked: 5, held: 2, buyerUnits: { 'buyer-1': 2 } });
  });

  it('refuses all or nothing with SOLD_OUT and what remains', async () => {
    const id = await product({ stocked: 2 });
    expect(await gate.reserve(request(id, 'b', 3))).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 2 });
    expect(await gate.reserve(request(id, 'b', 2))).toMatchObject({ ok: true, remaining: 0 });
    expect(await gate.reserve(request(id))).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 0 });
    expect(await gate.count(id)).toMatchObject({ remaining: 0, held: 2 });
  });

  it('refuses SALE_NOT_OPEN with opensAt before the window opens', async () => {
    const opensAt = new Date(Date.now() + 3_600_000).toISOString();
    const id = await product({ opensAt });
    expect(await gate.reserve(request(id))).toEqual({ ok: false, reason: 'SALE_NOT_OPEN', opensAt });
  });

  it('refuses SALE_ENDED after the window closes or an admin ends the sale', async () => {
    const closed = await product({ closesAt: new Date(Date.now() - 1000).toISOString() });
    expect(await gate.reserve(request(closed))).toEqual({ ok: false, reason: 'SALE_ENDED' });
    const ended = await product({ closesAt: inAnHour(), endedAt: new Date().toISOString() });
    expect(await gate.reserve(request(ended))).toEqual({ ok: false, reason: 'SALE_ENDED' });
  });

  it('refuses LIMIT_EXCEEDED with the limit, for one request or the buyer\'s total', async () => {
    const id = await product({ perBuyerLimit: 2 });
    expect(await gate.reserve(request(id, 'b', 3))).toEqual({ ok: false, reason: 'LIMIT_EXCEEDED', limit: 2 });
    expect(await gate.reserve(request(id, 'b', 1))).toMatchObject({ ok: true });
    expect(await gate.reserve(request(id, 'b', 2))).toEqual({ ok: false, reason: 'LIMIT_EXCEEDED', limit: 2 });
    expect(await gate.reserve(request(id, 'b', 1))).toMatchObject({ ok: true });
    expect(await gate.reserve(request(id, 'other', 2))).toMatchObject({ ok: true });
    expect(await gate.count(id)).toMatchObject({ remaining: 6, buyerUnits: { b: 2, other: 2 } });
  });

  it('answers NOT_LOADED for a product whose keys are missing', async () => {
    expect(await gate.reserve(request(randomUUID()))).toEqual({ ok: false, reason: 'NOT_LOADED' });
  });

  it('refuses PRODUCT_NOT_FOUND for a product marked absent, until it is loaded', async () => {
    const id = randomUUID();
    expect(await gate.markAbsent(id, 60_000)).toBe(true);
    expect(await gate.reserve(request(id))).toEqual({ ok: false, reason: 'PRODUCT_NOT_FOUND' });
    expect(
      await gate.load(id, {
        remaining: 1,
        stocked: 1,
        priceCents: 100,
        perBuyerLimit: null,
        holdSeconds: 60,
        opensAt: hourAgo(),
        closesAt: null,
        endedAt: null,
        accountsCreatedBefore: null,
        requiresFunds: false,
      }),
    ).toBe('loaded');
    expect(await gate.reserve(request(id))).toMatchObject({ ok: true, remaining: 0 });
    expect(await gate.markAbsent(id, 60_000)).toBe(false);
  });

  it('takes one unit for an order id reserved twice, and returns the same hold', async () => {
    const id = await product({ stocked: 3 });
    const asked = request(id, 'b', 1);
    const first = await gate.reserve(asked);
    const again = await gate.reserve(asked);
    const both = await Promise.all([gate.reserve(asked), gate.reserve(asked)]);

    expect(first.ok).toBe(true);
    if (!first.ok) throw new Error('refused');
    for (const outcome of [again, ...both]) expect(outcome).toMatchObject({ ok: true, allocation: first.allocation });
    expect(await gate.count(id)).toMatchObject({ remaining: 2, held: 1, buyerUnits: { b: 1 } });
  });

  it('answers a repeated order id with its hold even once the product is sold out or ended', async () => {
    const id = await product({ stocked: 1 });
    const asked = request(id);
    const first = await gate.reserve(asked);
    expect(await gate.update(id, { endedAt: new Date().toISOString() }, 1, 'apply')).toMatchObject({ ok: true });
    expect(await gate.reserve(asked)).toEqual({ ...first, remaining: 0, again: true });
  });
});

describe('release', () => {
  it('cancels a hold once, giving its units back to the stock and to the buyer\'s limit', async () => {
    const id = await product({ stocked: 2, perBuyerLimit: 2 });
    const asked = request(id, 'b', 2);
    await gate.reserve(asked);

    expect(await gate.release(id, asked.allocationId, 'cancelled', false)).toEqual({
      ok: true,
      released: { productId: id, buyerId: 'b', quantity: 2 },
    });
    expect(await gate.release(id, asked.allocationId, 'cancelled', false)).toEqual({ ok: false, reason: 'NOT_HELD', status: 'cancelled' });
    expect(await gate.count(id)).toMatchObject({ remaining: 2, held: 0, cancelled: 2, buyerUnits: {} });
    expect(await gate.reserve(request(id, 'b', 2))).toMatchObject({ ok: true, remaining: 0 });
  });

  it('expires a hold only once its expiry has passed by Redis TIME', async () => {
    const id = await product({ stocked: 1, holdSeconds: 1 });
    const asked = request(id, 'b');
    await gate.reserve(asked);

    expect(await gate.release(id, asked.allocationId, 'expired', true)).toEqual({ ok: false, reason: 'NOT_EXPIRED' });
    expect(await gate.expiredHolds(id, 10)).toEqual([]);
    await sleep(1_100);
    expect(await gate.expiredHolds(id, 10)).toEqual([asked.allocationId]);
    expect(await gate.release(id, asked.allocationId, 'expired', true)).toMatchObject({ ok: true });
    expect(await gate.release(id, asked.allocationId, 'expired', true)).toEqual({ ok: false, reason: 'NOT_HELD', status: 'expired' });
    expect(await gate.expiredHolds(id, 10)).toEqual([]);
    expect(await gate.count(id)).toMatchObject({ remaining: 1, held: 0, expired: 1 });
    // The expired order id keeps its answer: a retry learns it expired, and takes nothing.
    expect(await gate.reserve(asked)).toMatchObject({ ok: true, allocation: { status: 'expired' }, remaining: 1 });
  });

  it('answers NOT_FOUND for an unknown order id and NOT_LOADED for an unknown product', async () => {
    const id = await product();
    expect(await gate.release(id, randomUUID(), 'cancelled', false)).toEqual({ ok: false, reason: 'NOT_FOUND' });
    expect(await gate.release(randomUUID(), randomUUID(), 'cancelled', false)).toEqual({ ok: false, reason: 'NOT_LOADED' });
  });
});

describe('confirm', () => {
  it('turns a held hold into a sale, once, and never releases it after', async () => {
    const id = await product({ stocked: 3, perBuyerLimit: 1 });
    const asked = request(id, 'b');
    const held = await gate.reserve(asked);
    if (!held.ok) throw new Error('refused');

    const paid = await gate.confirm(id, asked.allocationId);
    expect(paid).toEqual({ ok: true, allocation: { ...held.allocation, status: 'paid' } });
    expect(await gate.confirm(id, asked.allocationId)).toEqual(paid);
    expect(await gate.release(id, asked.allocationId, 'cancelled', false)).toEqual({ ok: false, reason: 'NOT_HELD', status: 'paid' });
    expect(await gate.expiredHolds(id, 10)).toEqual([]);
    expect(await gate.count(id)).toMatchObject({ remaining: 2, held: 0, paid: 1, buyerUnits: { b: 1 } });
    expect(await gate.reserve(request(id, 'b'))).toEqual({ ok: false, reason: 'LIMIT_EXCEEDED', limit: 1 });
  });

  it('refuses EXPIRED for a hold past its expiry, even before it is released', async () => {
    const id = await product({ holdSeconds: 1 });
    const asked = request(id);
    await gate.reserve(asked);
    await sleep(1_100);
    expect(await gate.confirm(id, asked.allocationId)).toEqual({ ok: false, reason: 'EXPIRED' });
    await gate.release(id, asked.allocationId, 'expired', true);
    expect(await gate.confirm(id, asked.allocationId)).toEqual({ ok: false, reason: 'EXPIRED' });
  });

  it('refuses CANCELLED, NOT_FOUND and NOT_LOADED', async () => {
    const id = await product();
    const asked = request(id);
    await gate.reserve(asked);
    await gate.release(id, asked.allocationId, 'cancelled', false);
    expect(await gate.confirm(id, asked.allocationId)).toEqual({ ok: false, reason: 'CANCELLED' });
    expect(await gate.confirm(id, randomUUID())).toEqual({ ok: false, reason: 'NOT_FOUND' });
    expect(await gate.confirm(randomUUID(), randomUUID())).toEqual({ ok: false, reason: 'NOT_LOADED' });
  });
});

describe('load and update', () => {
  it('never overwrites live counters', async () => {
    const id = await product({ stocked: 10 });
    await gate.reserve(request(id, 'b', 4));
    const again = await gate.load(id, {
      remaining: 10,
      stocked: 10,
      priceCents: 1,
      perBuyerLimit: 1,
      holdSeconds: 1,
      opensAt: inAnHour(),
      closesAt: null,
      endedAt: null,
      accountsCreatedBefore: null,
      requiresFunds: false,
    });
    expect(again).toBe('live');
    expect(await gate.count(id)).toMatchObject({ remaining: 6, stocked: 10, held: 4 });
    expect(await gate.reserve(request(id, 'b', 2))).toMatchObject({ ok: true, allocation: { amountCents: 500 } });
  });

  it('loads a rebuild\'s buyer counts, so the limit holds across a rebuild', async () => {
    const id = await product({ stocked: 10, remaining: 8, perBuyerLimit: 2, buyerUnits: { b: 2 } });
    expect(await gate.reserve(request(id, 'b'))).toEqual({ ok: false, reason: 'LIMIT_EXCEEDED', limit: 2 });
    expect(await gate.reserve(request(id, 'c'))).toMatchObject({ ok: true, remaining: 7 });
  });

  it('applies an admin\'s change, and refuses to take away units that are held', async () => {
    const id = await product({ stocked: 3, perBuyerLimit: 1, opensAt: inAnHour() });
    expect(await gate.update(id, { stocked: 5, opensAt: hourAgo(), perBuyerLimit: null, priceCents: 100 }, 1, 'apply')).toEqual({
      ok: true,
      remaining: 5,
      stocked: 5,
      stale: false,
    });
    expect(await gate.reserve(request(id, 'b', 4))).toMatchObject({ ok: true, remaining: 1, allocation: { amountCents: 400 } });
    expect(await gate.update(id, { stocked: 3 }, 2, 'check')).toEqual({ ok: false, reason: 'INVALID_STOCK_CHANGE', remaining: 1 });
    expect(await gate.update(id, { stocked: 4 }, 2, 'check')).toEqual({ ok: true, remaining: 0, stocked: 4, stale: false });
    // Absolute: the same change again changes nothing.
    expect(await gate.update(id, { stocked: 4 }, 2, 'apply')).toEqual({ ok: true, remaining: 0, stocked: 4, stale: false });
    expect(await gate.update(id, { endedAt: new Date().toISOString() }, 3, 'apply')).toMatchObject({ ok: true });
    expect(await gate.reserve(request(id))).toEqual({ ok: false, reason: 'SALE_ENDED' });
    expect(await gate.update(randomUUID(), { stocked: 1 }, 1, 'apply')).toEqual({ ok: false, reason: 'NOT_LOADED' });
  });

  it('ends at the newest version whatever order changes arrive in', async () => {
    const id = await product({ stocked: 10 });
    // Version 7 (stocked 15) arrives before version 6 (stocked 12): 6 is ignored.
    expect(await gate.update(id, { stocked: 15, priceCents: 700 }, 7, 'apply')).toMatchObject({ ok: true, stocked: 15, stale: false });
    expect(await gate.update(id, { stocked: 12, priceCents: 600 }, 6, 'apply')).toMatchObject({ ok: true, stocked: 15, stale: true });
    expect(await gate.reserve(request(id))).toMatchObject({ ok: true, remaining: 14, allocation: { amountCents: 700 } });
    // The resync under the row's lock applies PostgreSQL's values whatever the gate applied.
    expect(await gate.update(id, { stocked: 12, priceCents: 600 }, 5, 'force')).toMatchObject({ ok: true, stocked: 12, remaining: 11 });
  });

  it('applies the terms of a sync whose stock it refuses, and refuses nothing of a check', async () => {
    const id = await product({ stocked: 2 });
    await gate.reserve(request(id, 'b', 2));
    expect(await gate.update(id, { stocked: 1, priceCents: 999 }, 1, 'check')).toEqual({ ok: false, reason: 'INVALID_STOCK_CHANGE', remaining: 0 });
    expect(await gate.reserve(request(id, 'c'))).toMatchObject({ ok: false, reason: 'SOLD_OUT' });
    expect(await gate.update(id, { stocked: 5 }, 1, 'apply')).toMatchObject({ ok: true, remaining: 3 });
    expect(await gate.reserve(request(id, 'c'))).toMatchObject({ ok: true, allocation: { amountCents: 250 } });
    // Stock refused (2 free of 5; 0 stocked would take 5), price applied all the same.
    expect(await gate.update(id, { stocked: 0, priceCents: 999 }, 2, 'apply')).toEqual({ ok: false, reason: 'INVALID_STOCK_CHANGE', remaining: 2 });
    expect(await gate.reserve(request(id, 'd'))).toMatchObject({ ok: true, allocation: { amountCents: 999 } });
  });

  it('counts a product that lost any one key as not loaded, and loads over it only in a rebuild', async () => {
    const redis = new Redis(REDIS_URL);
    try {
      for (const lost of ['terms', 'buyers', 'holds', 'expiries', 'unchecked'] as const) {
        const id = await product({ stocked: 5, perBuyerLimit: 2 });
        expect(await gate.reserve(request(id, 'b', 2))).toMatchObject({ ok: true });
        await redis.del(gate.keys.product(id)[lost]);
        expect(await gate.isLoaded(id), lost).toBe(false);
        expect(await gate.stockFigures(id), lost).toBeNull();
        expect(await gate.reserve(request(id, 'c')), lost).toEqual({ ok: false, reason: 'NOT_LOADED' });
        const terms = { remaining: 5, stocked: 5, priceCents: 1, perBuyerLimit: 2, holdSeconds: 60, opensAt: hourAgo(), closesAt: null, endedAt: null, accountsCreatedBefore: null, requiresFunds: false };
        // A first load does not write over what is left; a rebuild without the lock cannot either.
        expect(await gate.load(id, terms), lost).toBe('partial');
        expect(await gate.load(id, terms, 1, 'not-the-lock'), lost).toBe('lock-lost');
        expect(await gate.rebuildBegin(id, 'not-the-lock'), lost).toBe(false);
        // Under the lock: cleared, the holds written, then the terms.
        expect(await gate.lockRebuild(id, 'token', 10_000)).toBe(true);
        expect(await gate.rebuildBegin(id, 'token')).toBe(true);
        expect(await gate.rebuildHolds(id, 'token', 10_000, [
          { orderId: randomUUID(), buyerId: 'b', quantity: 2, amountCents: 2, expiresAt: Date.now() + 60_000, status: 'held', madeAt: Date.now() },
        ])).toBe(true);
        expect(await gate.isLoaded(id)).toBe(false);
        expect(await gate.load(id, { ...terms, remaining: 3 }, 1, 'token')).toBe('loaded');
        await gate.unlockRebuild(id, 'token');
        expect(await gate.isLoaded(id)).toBe(true);
        expect(await gate.reserve(request(id, 'b'))).toEqual({ ok: false, reason: 'LIMIT_EXCEEDED', limit: 2 });
        expect(await gate.count(id)).toMatchObject({ remaining: 3, stocked: 5, held: 2, buyerUnits: { b: 2 } });
      }
    } finally {
      redis.disconnect();
    }
  });
});

describe('Idempotency-Key', () => {
  const keyed = (productId: string, buyerId: string, key: string, quantity = 1): ReserveRequest => ({
    ...request(productId, buyerId, quantity),
    idempotencyKey: key,
  });

  it('binds a key to one request across products: another request under it is refused on any product, nothing taken', async () => {
    const [a, b] = [await product({ stocked: 3 }), await product({ stocked: 3 })];
    const buyer = randomUUID();
    const first = keyed(a, buyer, 'k');
    const bought = await gate.reserve(first);
    // A first grant under the key says since when the gate holds every binding (a retry does not).
    expect(bought).toMatchObject({ ok: true, remaining: 2, keyBoundSince: await gate.bindingsSince() });
    // Another request (another order id) under the key: on the other product, and on the same.
    expect(await gate.reserve(keyed(b, buyer, 'k'))).toEqual({ ok: false, reason: 'KEY_REUSED' });
    expect(await gate.reserve(keyed(a, buyer, 'k', 2))).toEqual({ ok: false, reason: 'KEY_REUSED' });
    // The same request finds its hold; another buyer's key of the same name is another key.
    expect(await gate.reserve(first)).toEqual({ ...bought, keyBoundSince: undefined, again: true });
    expect(await gate.reserve(keyed(b, randomUUID(), 'k'))).toMatchObject({ ok: true, remaining: 2 });
    expect(await gate.count(a)).toMatchObject({ remaining: 2, held: 1 });
    expect(await gate.count(b)).toMatchObject({ remaining: 2, held: 1 });
    // One string under the buyer's own tag, expiring with PostgreSQL's key retention.
    const binding = gate.keys.keyBinding(buyer, 'k');
    expect(binding).toContain(`{b:${buyer}}`);
    const ttl = await look.ttl(binding);
    expect(ttl).toBeGreaterThan(KEY_RETENTION_SECONDS - 60);
    expect(ttl).toBeLessThanOrEqual(KEY_RETENTION_SECONDS);
  });

  it('keeps a keyed refusal on the binding, not in the product, until the key retention ends', async () => {
    const short = await RedisGate.open(REDIS_URL, { keyPrefix: PREFIX, keyRetentionSeconds: 1 });
    try {
      const id = await product({ stocked: 1 });
      expect(await short.reserve(request(id))).toMatchObject({ ok: true, remaining: 0 });
      const buyer = randomUUID();
      const refused = keyed(id, buyer, 'late');
      expect(await short.reserve(refused)).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 0 });
      const { holds, terms } = short.keys.product(id);
      // One hold, and the marker that says the key is loaded.
      expect(await look.hlen(holds)).toBe(1 + 1);
      expect(await look.exists(`${short.keys.productTag(id)}:keys`)).toBe(0);
      // A unit comes back: the refused request is refused the same way, its first answer stands
      // (marked as given before: its figure is of that moment, no hint may be learnt from it).
      expect(await short.update(id, { stocked: 2 }, 1, 'apply')).toMatchObject({ ok: true, remaining: 1 });
      expect(await short.reserve(refused)).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 0, again: true });
      expect(await look.hget(terms, 'remaining')).toBe('1');
      // Past the retention the binding is gone, and the key buys as a new one.
      await sleep(1_100);
      expect(await look.exists(short.keys.keyBinding(buyer, 'late'))).toBe(0);
      expect(await short.reserve(refused)).toMatchObject({ ok: true, remaining: 0 });
    } finally {
      await short.close();
    }
  });

  it('answers a keyed request of a product known sold out from its binding alone, but gives a key that bought its hold', async () => {
    const soldOut = { ok: false, reason: 'SOLD_OUT', remaining: 0 } as const;
    const buyer = randomUUID();
    // A product with no keys at all: had its script run, it would answer NOT_LOADED.
    const nowhere = randomUUID();
    expect(await gate.reserve(request(nowhere), soldOut)).toEqual(soldOut);
    const late = keyed(nowhere, buyer, 'late');
    expect(await gate.reserve(late, soldOut)).toEqual(soldOut);
    // Kept on the binding: the request hears the same without the hint, still without the script.
    expect(await gate.reserve(late)).toEqual({ ...soldOut, again: true });
    expect(await look.exists(...gate.keys.productKeyList(nowhere))).toBe(0);

    // A key that bought gets its hold; another request under it is refused.
    const id = await product({ stocked: 1 });
    const winner = keyed(id, buyer, 'won');
    const won = await gate.reserve(winner);
    expect(won).toMatchObject({ ok: true, remaining: 0 });
    expect(await gate.reserve(winner, soldOut)).toEqual({ ...won, keyBoundSince: undefined, again: true });
    expect(await gate.reserve(keyed(id, buyer, 'won', 2), soldOut)).toEqual({ ok: false, reason: 'KEY_REUSED' });
    expect(await gate.count(id)).toMatchObject({ remaining: 0, held: 1 });
  });
});

describe('ended holds', () => {
  it('leave holds once past the horizon, a few per call, counted still; a keyed one stays for the key retention', async () => {
    const HORIZON_MS = 300;
    const pruning = await RedisGate.open(REDIS_URL, { keyPrefix: PREFIX, endedHoldsKeptMs: HORIZON_MS });
    try {
      const id = await product({ stocked: 100 });
      const { holds, ended } = pruning.keys.product(id);
      const cycle = async (status: 'cancelled' | 'expired', key?: string): Promise<ReserveRequest> => {
        const asked = { ...request(id), ...(key === undefined ? {} : { idempotencyKey: key }) };
        expect(await pruning.reserve(asked)).toMatchObject({ ok: true });
        expect(await pruning.release(id, asked.allocationId, status, false)).toMatchObject({ ok: true });
        return asked;
      };
      const keyedOne = await cycle('cancelled', 'mine');
      for (let i = 0; i < 30; i++) await cycle(i % 2 === 0 ? 'cancelled' : 'expired');
      const paid = request(id);
      await pruning.reserve(paid);
      await pruning.confirm(id, paid.allocationId);
      // With the marker of each key (`~`).
      expect(await look.hlen(holds)).toBe(32 + 1);
      expect(await look.zcard(ended)).toBe(31 + 1);

      await sleep(HORIZON_MS + 100);
      // Five more cycles prune up to 8 each per script: the 30 unkeyed holds past the horizon go.
      for (let i = 0; i < 5; i++) await cycle('cancelled');
      expect(await look.hlen(holds)).toBe(1 + 1 + 5 + 1);
      expect(await look.hexists(holds, keyedOne.allocationId)).toBe(1);
      expect(await look.hexists(holds, paid.allocationId)).toBe(1);
      expect(await look.zcard(ended)).toBe(1 + 5 + 1);
      expect(await pruning.count(id)).toMatchObject({ stocked: 100, remaining: 99, held: 0, paid: 1, cancelled: 21, expired: 15 });
      // The keyed hold is still there for its key's retry: it learns how it ended, nothing taken.
      expect(await pruning.reserve(keyedOne)).toMatchObject({ ok: true, again: true, allocation: { status: 'cancelled' } });
    } finally {
      await pruning.close();
    }
  });

  it('loaded by a rebuild leave holds the key retention after they were made', async () => {
    const short = await RedisGate.open(REDIS_URL, { keyPrefix: PREFIX, keyRetentionSeconds: 2 });
    try {
      const id = randomUUID();
      const now = Date.now();
      const hold = (status: 'cancelled' | 'expired' | 'paid', madeAt: number): GateHold => ({
        orderId: randomUUID(),
        buyerId: randomUUID(),
        quantity: 1,
        amountCents: 250,
        expiresAt: madeAt + 60_000,
        status,
        madeAt,
      });
      const old = hold('cancelled', now - 60_000);
      const recent = hold('expired', now);
      const sold = hold('paid', now - 60_000);
      expect(
        await short.load(id, {
          remaining: 4,
          stocked: 5,
          priceCents: 250,
          perBuyerLimit: null,
          holdSeconds: 300,
          opensAt: hourAgo(),
          closesAt: null,
          endedAt: null,
          accountsCreatedBefore: null,
          requiresFunds: false,
          buyerUnits: { [sold.buyerId]: 1 },
          holds: [old, recent, sold],
        }),
      ).toBe('loaded');
      const { holds } = short.keys.product(id);
      expect(await short.reserve(request(id))).toMatchObject({ ok: true, remaining: 3 });
      expect(await look.hexists(holds, old.orderId)).toBe(0);
      expect(await look.hexists(holds, recent.orderId)).toBe(1);
      expect(await look.hexists(holds, sold.orderId)).toBe(1);
      expect(await short.count(id)).toMatchObject({ cancelled: 1, expired: 1, paid: 1, held: 1 });
    } finally {
      await short.close();
    }
  });

  it('are told from a keyed refusal an older version kept among them: it is answered as it was, and counts no units', async () => {
    const id = await product({ stocked: 2 });
    const old = request(id);
    await look.hset(gate.keys.product(id).holds, old.allocationId, JSON.stringify({ s: 'refused', c: -6, d: 0 }));
    expect(await gate.reserve(old)).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 0 });
    expect(await gate.confirm(id, old.allocationId)).toEqual({ ok: false, reason: 'NOT_FOUND' });
    expect(await gate.release(id, old.allocationId, 'cancelled', false)).toEqual({ ok: false, reason: 'NOT_FOUND' });
    expect(await gate.count(id)).toEqual({ remaining: 2, stocked: 2, held: 0, paid: 0, expired: 0, cancelled: 0, buyerUnits: {} });
  });

  it('skip the marker member ~ of every hash and sorted set', async () => {
    const id = await product({ stocked: 5, holdSeconds: 1 });
    const keys = gate.keys.product(id);
    await look.hset(keys.holds, '~', '1');
    await look.hset(keys.buyers, '~', '1');
    for (const set of [keys.expiries, keys.ended, keys.unchecked]) await look.zadd(set, 0, '~');
    const asked = request(id, 'b');
    expect(await gate.reserve(asked)).toMatchObject({ ok: true, remaining: 4 });
    expect(await gate.release(id, asked.allocationId, 'cancelled', false)).toMatchObject({ ok: true });
    expect(await gate.count(id)).toEqual({ remaining: 5, stocked: 5, held: 0, paid: 0, expired: 0, cancelled: 1, buyerUnits: {} });
    expect(await gate.expiredHolds(id, 10)).toEqual([]);
    expect((await gate.uncheckedBefore(id, Date.now() + 60_000, 10)).ids).toEqual([asked.allocationId]);
    expect(await look.zscore(keys.ended, '~')).toBe('0');
  });
});

describe('storm', () => {
  it('holds exactly 100 units when 2,000 reserves race for them, no buyer over the limit of 2', async () => {
    const id = await product({ stocked: 100, perBuyerLimit: 2 });
    // A second connection, so the calls of two clients interleave in Redis as two servers' would.
    const other = await RedisGate.open(REDIS_URL, { keyPrefix: PREFIX });
    try {
      // 60 buyers, ~33 requests each, some for 2 units: the limit (120 units in all) and the stock
      // (100) both bind, and each buyer's requests race one another.
      const requests = Array.from({ length: 2_000 }, (_, i) => request(id, `buyer-${i % 60}`, i % 5 === 0 ? 2 : 1));
      const outcomes = await Promise.all(requests.map((r, i) => (i % 2 === 0 ? gate : other).reserve(r)));

      const perBuyer = new Map<string, number>();
      const refusals = new Map<string, number>();
      for (const o of outcomes) {
        if (o.ok) perBuyer.set(o.allocation.buyerId, (perBuyer.get(o.allocation.buyerId) ?? 0) + o.allocation.quantity);
        else refusals.set(o.reason, (refusals.get(o.reason) ?? 0) + 1);
      }
      expect([...perBuyer.values()].reduce((a, b) => a + b, 0)).toBe(100);
      expect(Math.max(...perBuyer.values())).toBeLessThanOrEqual(2);
      expect([...refusals.keys()].sort()).toEqual(['LIMIT_EXCEEDED', 'SOLD_OUT']);

      const count = await gate.count(id);
      expect(count).toMatchObject({ remaining: 0, stocked: 100, held: 100 });
      if (!count) throw new Error('not loaded');
      expect(count.remaining + count.held + count.paid).toBe(count.stocked);
      expect(count.buyerUnits).toEqual(Object.fromEntries(perBuyer));
    } finally {
      await other.close();
    }
  });
});
