/**
 * The redis-lua gate, unchanged, on a real three-master Redis Cluster started for this file
 * (test/support/redis-cluster.ts): a product's keys share its hash tag's slot and live on the
 * one master serving it, a buyer's key bindings on its own tag's master and one key bound across
 * products on three masters, products spread over every master, a storm over products on three
 * different masters holds exactly the stock within each buyer's limit, and release, confirm,
 * update, expiry by Redis TIME and a lost script cache work on every master.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ReserveRequest } from '../src/inventory/inventory.types.js';
import { RedisGate, SCRIPTS, SINGLE_REDIS_ONLY, scriptSource, type GateLoad, type GateReserveOutcome } from '../src/inventory/redis/gate.js';
import { startRedisCluster, type RedisCluster } from './support/redis-cluster.js';

const PREFIX = `test:cluster:${randomUUID().slice(0, 8)}:`;

/** A direct connection to one master: what that node itself holds, not what the cluster routes. */
interface Master {
  readonly port: number;
  readonly redis: Redis;
}

let cluster: RedisCluster | undefined;
let gate: RedisGate;
let masters: Master[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
  gate = await RedisGate.open({ cluster: cluster.nodes }, { keyPrefix: PREFIX });
  masters = cluster.nodes.map((node) => ({ port: node.port, redis: new Redis(node.port, node.host) }));
});
afterAll(async () => {
  await gate?.close();
  await Promise.all(masters.map((master) => master.redis.quit()));
  await cluster?.stop();
});

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const hourAgo = (): string => new Date(Date.now() - 3_600_000).toISOString();
const ports = (): number[] => masters.map((master) => master.port).sort((a, b) => a - b);
const anyMaster = (): Redis => {
  const [first] = masters;
  if (!first) throw new Error('no cluster');
  return first.redis;
};

async function load(id: string, terms: Partial<GateLoad> = {}): Promise<void> {
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
}

const request = (productId: string, buyerId: string = randomUUID(), quantity = 1): ReserveRequest => ({
  allocationId: randomUUID(),
  productId,
  buyerId,
  quantity,
});

/** Which master serves each slot, as the cluster itself says (CLUSTER SLOTS). */
async function slotOwners(): Promise<(slot: number) => number> {
  const ranges = await anyMaster().cluster('SLOTS');
  return (slot) => {
    const [, , master] = ranges.find(([start, end]) => start <= slot && slot <= end) ?? [];
    if (!master) throw new Error(`no master serves slot ${slot}`);
    return master[1];
  };
}

const slotOf = (key: string): Promise<number> => anyMaster().cluster('KEYSLOT', key);

/** Ids, one on each master by the slot of their hash tag (`p:` a product's, `b:` a buyer's), in master order. */
async function onePerMaster(tag = 'p'): Promise<string[]> {
  const ownerOf = await slotOwners();
  const byPort = new Map<number, string>();
  for (let tries = 0; byPort.size < masters.length; tries++) {
    if (tries > 1_000) throw new Error(`no ${tag}: id landed on some master`);
    const id = randomUUID();
    const port = ownerOf(await slotOf(`${tag}:${id}`));
    if (!byPort.has(port)) byPort.set(port, id);
  }
  return ports().map((port) => byPort.get(port) as string);
}

/** Every key under the prefix that each master itself holds (SCAN is local to a node). */
async function keysByMaster(): Promise<Map<string, number>> {
  const where = new Map<string, number>();
  for (const { port, redis } of masters) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${PREFIX}*`, 'COUNT', 1000);
      for (const key of keys) {
        // A key on two masters would be a split product: not something a cluster should ever do.
        expect(where.get(key), `${key} on two masters`).toBeUndefined();
        where.set(key, port);
      }
      cursor = next;
    } while (cursor !== '0');
  }
  return where;
}

describe('key placement', () => {
  it("keeps every key of a product in its tag's slot on one master, and spreads products over all three", async () => {
    const ids = Array.from({ length: 30 }, () => randomUUID());
    const buyer = randomUUID();
    // A load writes only the terms; a keyed reserve and a cancelled hold write every other key of
    // the product, and the key's binding under the buyer's own tag.
    await Promise.all(
      ids.map(async (id) => {
        await load(id);
        expect(await gate.reserve({ ...request(id, buyer), idempotencyKey: `key-${id}` })).toMatchObject({ ok: true, remaining: 9 });
        expect(await gate.reserve({ ...request(id, buyer), idempotencyKey: `key-${id}` })).toEqual({ ok: false, reason: 'KEY_REUSED' });
        const cancelled = request(id);
        expect(await gate.reserve(cancelled)).toMatchObject({ ok: true, remaining: 8 });
        expect(await gate.release(id, cancelled.allocationId, 'cancelled', false)).toMatchObject({ ok: true });
      }),
    );

    const ownerOf = await slotOwners();
    const where = await keysByMaster();
    const productsPerMaster = new Map<number, number>();
    for (const id of ids) {
      const keys = gate.keys.productKeyList(id);
      const tagSlot = await slotOf(`p:${id}`);
      // The slot is the hash tag's alone: neither the prefix nor the key's suffix moves it.
      const slots = await Promise.all([...keys, gate.keys.rebuildLock(id)].map(slotOf));
      expect(slots).toEqual(slots.map(() => tagSlot));
      // Every key the scripts take exists, on the master serving that slot and on no other.
      const owner = ownerOf(tagSlot);
      expect(keys.map((key) => where.get(key))).toEqual(keys.map(() => owner));
      productsPerMaster.set(owner, (productsPerMaster.get(owner) ?? 0) + 1);
      // The binding is in the buyer's tag's slot, on the master serving it.
      const binding = gate.keys.keyBinding(buyer, `key-${id}`);
      const buyerSlot = await slotOf(`b:${buyer}`);
      expect(await slotOf(binding)).toBe(buyerSlot);
      expect(where.get(binding)).toBe(ownerOf(buyerSlot));
    }
    expect([...productsPerMaster.keys()].sort((a, b) => a - b)).toEqual(ports());
  });

  it('binds one Idempotency-Key across products on three masters: another request under it is refused on each', async () => {
    const ids = await onePerMaster();
    await Promise.all(ids.map((id) => load(id, { stocked: 2 })));
    const buyer = randomUUID();
    const first = { ...request(ids[0] ?? '', buyer), idempotencyKey: 'one-key' };
    const bought = await gate.reserve(first);
    expect(bought).toMatchObject({ ok: true, remaining: 1 });
    for (const id of ids) {
      expect(await gate.reserve({ ...request(id, buyer), idempotencyKey: 'one-key' })).toEqual({ ok: false, reason: 'KEY_REUSED' });
    }
    expect(await gate.reserve(first)).toEqual({ ...bought, keyBoundSince: undefined, again: true });
    const counts = await Promise.all(ids.map((id) => gate.count(id)));
    expect(counts.map((count) => count?.held)).toEqual([1, 0, 0]);
  });
});

describe('storm', () => {
  it('holds exactly the stock of three products on three masters, no buyer over the limit', async () => {
    const limits = [null, 1, 2] as const;
    const stock = 20;
    const ids = await onePerMaster();
    await Promise.all(ids.map((id, i) => load(id, { stocked: stock, perBuyerLimit: limits[i] ?? null })));
    // A second connection, so the calls of two clients interleave in each master as two servers' would.
    const other = await RedisGate.open({ cluster: cluster?.nodes ?? [] }, { keyPrefix: PREFIX });
    try {
      // 200 buyers, each with two racing requests for every product, every fifth asking 2 units at
      // first: the stock (20) binds for all three, the limit too for the limited two.
      const requests = Array.from({ length: 200 }, (_, buyer) =>
        ids.flatMap((id) => [request(id, `buyer-${buyer}`, buyer % 5 === 0 ? 2 : 1), request(id, `buyer-${buyer}`)]),
      ).flat();
      const outcomes = await Promise.all(requests.map((r, i) => (i % 2 === 0 ? gate : other).reserve(r)));

      for (const [i, id] of ids.entries()) {
        const limit = limits[i] ?? null;
        const mine = outcomes.filter((_, n) => requests[n]?.productId === id);
        expect(mine).toHaveLength(400);
        const { perBuyer, refusals } = tally(mine);
        expect([...perBuyer.values()].reduce((a, b) => a + b, 0), `units sold of product ${i}`).toBe(stock);
        if (limit !== null) expect(Math.max(...perBuyer.values())).toBeLessThanOrEqual(limit);
        expect(refusals.has('SOLD_OUT')).toBe(true);
        // A 2-unit request over a limit of 1 is refused for the limit, whatever remains.
        if (limit === 1) expect(refusals.has('LIMIT_EXCEEDED')).toBe(true);
        const allowed = limit === null ? ['SOLD_OUT'] : ['LIMIT_EXCEEDED', 'SOLD_OUT'];
        for (const reason of refusals.keys()) expect(allowed).toContain(reason);

        const count = await gate.count(id);
        expect(count).toMatchObject({ remaining: 0, stocked: stock, held: stock, paid: 0 });
        if (!count) throw new Error('not loaded');
        expect(count.remaining + count.held + count.paid).toBe(count.stocked);
        expect(count.buyerUnits).toEqual(Object.fromEntries(perBuyer));
      }
    } finally {
      await other.close();
    }
  });
});

/** Units granted by buyer, and refusals by reason. */
function tally(outcomes: readonly GateReserveOutcome[]): { perBuyer: Map<string, number>; refusals: Map<string, number> } {
  const perBuyer = new Map<string, number>();
  const refusals = new Map<string, number>();
  for (const o of outcomes) {
    if (o.ok) perBuyer.set(o.allocation.buyerId, (perBuyer.get(o.allocation.buyerId) ?? 0) + o.allocation.quantity);
    else refusals.set(o.reason, (refusals.get(o.reason) ?? 0) + 1);
  }
  return { perBuyer, refusals };
}

describe('release, confirm and update on every master', () => {
  it('confirms, cancels and changes terms once, answering repeats the same', async () => {
    const ids = await onePerMaster();
    await Promise.all(
      ids.map(async (id) => {
        await load(id, { stocked: 5, perBuyerLimit: 2 });
        const paidOrder = request(id, 'alice', 1);
        const held = await gate.reserve(paidOrder);
        if (!held.ok) throw new Error(`refused: ${held.reason}`);
        expect(await gate.reserve(paidOrder)).toEqual({ ...held, again: true });

        const paid = await gate.confirm(id, paidOrder.allocationId);
        expect(paid).toEqual({ ok: true, allocation: { ...held.allocation, status: 'paid' } });
        expect(await gate.confirm(id, paidOrder.allocationId)).toEqual(paid);
        expect(await gate.release(id, paidOrder.allocationId, 'cancelled', false)).toEqual({
          ok: false,
          reason: 'NOT_HELD',
          status: 'paid',
        });

        const cancelledOrder = request(id, 'bob', 2);
        expect(await gate.reserve(cancelledOrder)).toMatchObject({ ok: true, remaining: 2 });
        expect(await gate.release(id, cancelledOrder.allocationId, 'cancelled', false)).toEqual({
          ok: true,
          released: { productId: id, buyerId: 'bob', quantity: 2 },
        });
        expect(await gate.release(id, cancelledOrder.allocationId, 'cancelled', false)).toEqual({
          ok: false,
          reason: 'NOT_HELD',
          status: 'cancelled',
        });
        expect(await gate.confirm(id, cancelledOrder.allocationId)).toEqual({ ok: false, reason: 'CANCELLED' });

        // Every value is absolute: the same change applied again changes nothing more.
        for (let again = 0; again < 2; again++) {
          expect(await gate.update(id, { stocked: 8, priceCents: 100, perBuyerLimit: 1 }, 1, 'apply')).toEqual({
            ok: true,
            remaining: 7,
            stocked: 8,
            stale: false,
          });
        }
        expect(await gate.update(id, { stocked: 0 }, 2, 'check')).toEqual({ ok: false, reason: 'INVALID_STOCK_CHANGE', remaining: 7 });
        expect(await gate.reserve(request(id, 'alice'))).toEqual({ ok: false, reason: 'LIMIT_EXCEEDED', limit: 1 });
        expect(await gate.reserve(request(id, 'bob'))).toMatchObject({ ok: true, remaining: 6, allocation: { amountCents: 100 } });

        const count = await gate.count(id);
        expect(count).toEqual({
          remaining: 6,
          stocked: 8,
          held: 1,
          paid: 1,
          expired: 0,
          cancelled: 2,
          buyerUnits: { alice: 1, bob: 1 },
        });
      }),
    );
  });

  it('expires a hold only once its expiry has passed by Redis TIME', async () => {
    const skew = (await gate.now()) - Date.now();
    expect(Math.abs(skew)).toBeLessThan(1_000);

    const ids = await onePerMaster();
    const orders = await Promise.all(
      ids.map(async (id) => {
        await load(id, { stocked: 1, holdSeconds: 1 });
        const order = request(id, 'b');
        expect(await gate.reserve(order)).toMatchObject({ ok: true, remaining: 0 });
        expect(await gate.release(id, order.allocationId, 'expired', true)).toEqual({ ok: false, reason: 'NOT_EXPIRED' });
        expect(await gate.expiredHolds(id, 10)).toEqual([]);
        return order;
      }),
    );
    await sleep(1_100);
    await Promise.all(
      orders.map(async ({ productId: id, allocationId }) => {
        expect(await gate.expiredHolds(id, 10)).toEqual([allocationId]);
        expect(await gate.confirm(id, allocationId)).toEqual({ ok: false, reason: 'EXPIRED' });
        expect(await gate.release(id, allocationId, 'expired', true)).toEqual({
          ok: true,
          released: { productId: id, buyerId: 'b', quantity: 1 },
        });
        expect(await gate.release(id, allocationId, 'expired', true)).toEqual({ ok: false, reason: 'NOT_HELD', status: 'expired' });
        expect(await gate.count(id)).toMatchObject({ remaining: 1, stocked: 1, held: 0, expired: 1, buyerUnits: {} });
      }),
    );
  });
});

describe('scripts', () => {
  it('are loaded on every master at open, and still run on each after its script cache is flushed', async () => {
    const shas = SCRIPTS.filter((name) => !SINGLE_REDIS_ONLY.has(name)).map((name) => createHash('sha1').update(scriptSource(name)).digest('hex'));
    const everyScriptOnEveryMaster = async (): Promise<void> => {
      for (const { redis } of masters) expect(await redis.script('EXISTS', ...shas)).toEqual(shas.map(() => 1));
    };
    const flushEveryMaster = async (): Promise<void> => {
      for (const { redis } of masters) await redis.script('FLUSH');
    };
    // Flushed first: a script any earlier call ran is cached, so only this open can have loaded them.
    await flushEveryMaster();
    await (await RedisGate.open({ cluster: cluster?.nodes ?? [] }, { keyPrefix: PREFIX })).close();
    await everyScriptOnEveryMaster();

    // As after a restart: EVALSHA answers NOSCRIPT, and the gate sends the script again by EVAL.
    await flushEveryMaster();
    const ids = await onePerMaster();
    // Buyers whose key bindings are on each master, so the binding scripts run on every one too.
    const buyers = await onePerMaster('b');
    await Promise.all(
      ids.map(async (id, i) => {
        expect(await gate.markAbsent(id, 60_000)).toBe(true);
        expect(await gate.reserve(request(id))).toEqual({ ok: false, reason: 'PRODUCT_NOT_FOUND' });
        await load(id, { stocked: 2 });
        const order = request(id, 'b', 2);
        expect(await gate.reserve(order)).toMatchObject({ ok: true, remaining: 0 });
        expect(await gate.confirm(id, order.allocationId)).toMatchObject({ ok: true });
        expect(await gate.release(id, order.allocationId, 'cancelled', false)).toMatchObject({ ok: false, reason: 'NOT_HELD' });
        expect(await gate.update(id, { stocked: 3 }, 1, 'apply')).toEqual({ ok: true, remaining: 1, stocked: 3, stale: false });
        // claim-key, then reserve refuses and keep-refusal keeps it, on the buyer's master.
        const keyed = { ...request(id, buyers[i] as string, 2), idempotencyKey: 'flushed' };
        expect(await gate.reserve(keyed)).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 1 });
        expect(await gate.reserve(keyed)).toEqual({ ok: false, reason: 'SOLD_OUT', remaining: 1, again: true });
        // A rebuild's two steps, under its lock (load, its last step, ran above).
        expect(await gate.lockRebuild(id, 'flushed', 10_000)).toBe(true);
        expect(await gate.rebuildBegin(id, 'flushed')).toBe(true);
        expect(await gate.rebuildHolds(id, 'flushed', 10_000, [])).toBe(true);
        await gate.unlockRebuild(id, 'flushed');
      }),
    );
    await everyScriptOnEveryMaster();
  });
});
