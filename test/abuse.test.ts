/**
 * Abuse costs the abuser: every buyer route is limited per buyer (`RATE_LIMIT_PER_SECOND`) and a
 * buyer has a cap on requests in flight (`BUYER_MAX_IN_FLIGHT`), which counts work, not sockets;
 * a payment or cancel of an order id nobody placed (or another buyer's) is answered at once, while
 * one the gate holds for the buyer still waits for the pipeline; `redis-lock` refuses what it can
 * without taking the product's lock; and on `optimistic` and `event-sourced` a buyer looping hold →
 * cancel is held to the limits.
 *
 * Two servers on the same databases, keys and queues: `a` with the limits at their defaults and
 * the pipeline's consumer, `b` with the limits off, no worker, and orders' database behind a proxy
 * that counts the queries `b` sends it.
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, databaseUrl, type Sql } from '../src/infra/database.js';
import { GateKeys } from '../src/inventory/redis/keys.js';
import type { Answer } from './support/api.js';
import { startCountingPgProxy, type CountingPgProxy } from './support/pg-round-trips.js';
import { startTestServer, TEST_DATABASE_URL, TEST_REDIS_URL, withPipeline, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

/** The defaults of `RATE_LIMIT_PER_SECOND` and `BUYER_MAX_IN_FLIGHT`. */
const RATE_LIMIT = 20;
const MAX_IN_FLIGHT = 4;
/** `REDIS_LOCK_WAIT_MS`: how long a purchase waits for a taken lock before `CONTENTION`. */
const LOCK_WAIT_MS = 1_000;
const PIPELINE_SECRET = 'abuse-test-pipeline-secret-0123456789';

let a: TestServer;
let b: TestServer;
let proxy: CountingPgProxy;
let inventorySql: Sql;
let redis: Redis;

beforeAll(async () => {
  a = await startTestServer({
    ...withPipeline(),
    strategy: 'redis-lua',
    pipelineSecret: PIPELINE_SECRET,
    rateLimitPerSecond: RATE_LIMIT,
    buyerMaxInFlight: MAX_IN_FLIGHT,
    redisLockWaitMs: LOCK_WAIT_MS,
  });
  const pg = new URL(TEST_DATABASE_URL);
  proxy = await startCountingPgProxy({ host: pg.hostname, port: Number(pg.port || '5432') });
  const proxied = new URL(TEST_DATABASE_URL);
  proxied.port = String(proxy.port);
  b = await startTestServer({
    databasePrefix: a.config.databasePrefix,
    moduleDatabaseUrls: { users: undefined, inventory: undefined, orders: databaseUrl(proxied.toString(), `${a.config.databasePrefix}orders`) },
    redisUrl: a.config.redisUrl,
    amqpUrl: a.config.amqpUrl,
    redisKeyPrefix: a.config.redisKeyPrefix,
    queuePrefix: a.config.queuePrefix,
    strategy: 'redis-lua',
    pipelineSecret: PIPELINE_SECRET,
    redisLockWaitMs: LOCK_WAIT_MS,
    // Nothing in the background reads orders' database: what the proxy counts is the requests'.
    worker: false,
    outboxRelay: false,
    sweepIntervalMs: 60_000,
  });
  inventorySql = connect(databaseUrl(TEST_DATABASE_URL, `${a.config.databasePrefix}inventory`), 1, 'flashsale:abuse-test');
  redis = new Redis(TEST_REDIS_URL);
});
afterAll(async () => {
  redis?.disconnect();
  await inventorySql?.end();
  await b?.stop({ keepData: true });
  await proxy?.close();
  await a?.stop();
});

const orderIdOf = (answer: Answer): string => (answer.body['order'] as { id: string }).id;
const codeOf = (answer: Answer): string => `${answer.status}${typeof answer.body['code'] === 'string' ? ` ${answer.body['code']}` : ''}`;

/** Wall-clock seconds touched between `start` and `end` (ms): the rate limit's windows. */
const windowsBetween = (start: number, end: number): number => Math.floor(end / 1000) - Math.floor(start / 1000) + 1;

function pay(t: TestServer, token: string, orderId: string): Promise<Answer> {
  return t.api.call('POST', `/v1/orders/${orderId}/pay`, { token });
}

function cancel(t: TestServer, token: string, orderId: string): Promise<Answer> {
  return t.api.call('POST', `/v1/orders/${orderId}/cancel`, { token });
}

/** Takes a product's redis-lock lock as another holder would; returns its token. */
async function holdLock(productId: string, ms = 30_000): Promise<{ key: string; token: string }> {
  const key = new GateKeys(a.config.redisKeyPrefix).stockLock(productId);
  const token = `test-holder-${randomUUID()}`;
  expect(await redis.set(key, token, 'PX', ms, 'NX')).toBe('OK');
  return { key, token };
}

async function fenceOf(productId: string): Promise<string> {
  const [row] = await inventorySql<{ fence: string }[]>`select fence::text from products where id = ${productId}`;
  return row?.fence ?? 'none';
}

describe('the per-buyer rate limit', () => {
  it.each([
    ['a cancel', (token: string) => cancel(a, token, randomUUID())],
    ['a read of an order', (token: string) => a.api.call('GET', `/v1/orders/${randomUUID()}`, { token })],
    ["the buyer's own page", (token: string) => a.api.call('GET', '/v1/me', { token })],
  ] as const)('holds %s to RATE_LIMIT_PER_SECOND like a purchase', async (_route, send) => {
    const [buyer] = await a.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const start = Date.now();
    const answers = await storm(3 * RATE_LIMIT, () => send(buyer.token));
    const windows = windowsBetween(start, Date.now());
    const limited = answers.filter((answer) => answer.body['code'] === 'RATE_LIMITED');
    expect(limited.length).toBeGreaterThan(0);
    expect(limited[0]?.headers['retry-after']).toBe('1');
    // Those the limiter let through, whatever came after it (the cap in flight included).
    expect(answers.length - limited.length).toBeLessThanOrEqual(RATE_LIMIT * windows);
    for (const answer of answers) expect(['200', '404 ORDER_NOT_FOUND', '429 RATE_LIMITED', '429 TOO_MANY_IN_FLIGHT']).toContain(codeOf(answer));
  });
});

describe('the cap on requests in flight', () => {
  it('answers a buyer beyond BUYER_MAX_IN_FLIGHT requests at once 429 TOO_MANY_IN_FLIGHT, at once, and no one else', async () => {
    const product = await a.api.createProduct({ stock: 10, strategy: 'redis-lock' });
    const [greedy, calm] = await a.api.createBuyers(2);
    if (!greedy || !calm) throw new Error('no buyers');
    // Every purchase that passes the checks waits for the lock, then hears CONTENTION: slow work.
    const lock = await holdLock(product.id);
    try {
      const answers = await storm(12, () => a.api.purchase(greedy.token, product.id));
      expect(tally(answers)).toEqual({ '409 CONTENTION': MAX_IN_FLIGHT, '429 TOO_MANY_IN_FLIGHT': 12 - MAX_IN_FLIGHT });
      const capped = answers.find((answer) => answer.body['code'] === 'TOO_MANY_IN_FLIGHT');
      expect(capped?.headers['retry-after']).toBe('1');
      expect(capped?.body).toMatchObject({ limit: MAX_IN_FLIGHT });
      // The cap is the buyer's own.
      expect(codeOf(await a.api.purchase(calm.token, product.id))).toBe('409 CONTENTION');
    } finally {
      await redis.del(lock.key);
    }
    expect((await a.api.purchase(greedy.token, product.id)).status).toBe(201);
    await expectInvariant(a.api, product.id, []);
  });

  it('keeps a request in flight until its work ends, even when its client hangs up', async () => {
    const product = await a.api.createProduct({ stock: 10, strategy: 'redis-lock' });
    const [buyer] = await a.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const lock = await holdLock(product.id);
    try {
      const hangUp = new AbortController();
      const abandoned = Array.from({ length: MAX_IN_FLIGHT }, () =>
        request(`${a.server.url}/v1/purchases`, {
          method: 'POST',
          headers: { authorization: `Bearer ${buyer.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ productId: product.id, quantity: 1 }),
          signal: hangUp.signal,
        }).then(
          () => 'answered',
          () => 'hung up',
        ),
      );
      // They are waiting for the lock (up to LOCK_WAIT_MS) when their clients go.
      await sleep(LOCK_WAIT_MS / 4);
      hangUp.abort();
      expect(await Promise.all(abandoned)).toEqual(Array(MAX_IN_FLIGHT).fill('hung up'));
      expect(codeOf(await a.api.purchase(buyer.token, product.id))).toBe('429 TOO_MANY_IN_FLIGHT');
      // Once their lock waits end, their places are free again.
      let answer = await a.api.purchase(buyer.token, product.id);
      for (let tries = 0; answer.status === 429 && tries < 50; tries += 1) {
        await sleep(100);
        answer = await a.api.purchase(buyer.token, product.id);
      }
      expect(codeOf(answer)).toBe('409 CONTENTION');
    } finally {
      await redis.del(lock.key);
    }
    await expectInvariant(a.api, product.id, []);
  });

  it('frees the place of a request whose client hangs up before its body has arrived', async () => {
    const product = await a.api.createProduct({ stock: 10 });
    const [buyer] = await a.api.createBuyers(1);
    if (!buyer) throw new Error('no buyer');
    const { port } = new URL(a.server.url);
    // Headers sent whole, the body promised but never sent: each request holds a place meanwhile.
    const halfSent = await Promise.all(
      Array.from({ length: MAX_IN_FLIGHT }, async () => {
        const socket = netConnect(Number(port), '127.0.0.1');
        await once(socket, 'connect');
        socket.write(
          `POST /v1/purchases HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${buyer.token}\r\n` +
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
        );
        return socket;
      }),
    );
    let answer: Answer;
    try {
      // Time for the server to read their headers (a request sent sooner would take a place first).
      await sleep(300);
      answer = await a.api.purchase(buyer.token, product.id);
      expect(codeOf(answer)).toBe('429 TOO_MANY_IN_FLIGHT');
    } finally {
      for (const socket of halfSent) socket.destroy();
    }
    answer = await a.api.purchase(buyer.token, product.id);
    for (let tries = 0; answer.status === 429 && tries < 50; tries += 1) {
      await sleep(100);
      answer = await a.api.purchase(buyer.token, product.id);
    }
    expect(answer.status).toBe(201);
    await expectInvariant(a.api, product.id, [answer]);
  });
});

describe('pay and cancel of an order that is not in orders\' database', () => {
  it('answers ids nobody placed, and another buyer\'s orders on their way, 404 at once: 12 at once cost a read each, not a wait', async () => {
    const product = await a.api.createProduct({ stock: 20 });
    const [owner, prober] = await a.api.createBuyers(2);
    if (!owner || !prober) throw new Error('no buyers');
    const pipeline = a.server.system.pipeline;
    await pipeline?.consumer?.stop();
    try {
      // The owner's orders, placed on a and not written yet: the gate holds them, for the owner.
      const placed = await Promise.all(Array.from({ length: 3 }, () => a.api.purchase(owner.token, product.id)));
      expect(tally(placed)).toEqual({ '201': 3 });
      const theirs = placed.map(orderIdOf);
      const before = proxy.roundTrips();
      const answers = await storm(12, (i) => {
        const id = i < 6 ? randomUUID() : (theirs[i % 3] as string);
        return i % 2 === 0 ? pay(b, prober.token, id) : cancel(b, prober.token, id);
      });
      const roundTrips = proxy.roundTrips() - before;
      expect(tally(answers)).toEqual({ '404 ORDER_NOT_FOUND': 12 });
      // A read of the order each (polling for the pipeline read it every 50 ms for 2 s: ~40 each).
      expect(roundTrips).toBeLessThanOrEqual(12 * 2);
      console.info(`12 pays and cancels of unknown ids on b: ${roundTrips} round trips to orders' database`);
    } finally {
      pipeline?.consumer?.start();
    }
  });

  it('still waits for a genuine order another process placed: a pay that arrives before the consumer wrote it is paid', async () => {
    const product = await a.api.createProduct({ stock: 5, priceCents: 700 });
    const [buyer] = await a.api.createBuyers(1, 10_000);
    if (!buyer) throw new Error('no buyer');
    const pipeline = a.server.system.pipeline;
    await pipeline?.consumer?.stop();
    let paying: Promise<Answer> | undefined;
    let cancelling: Promise<Answer> | undefined;
    let bought: Answer[] = [];
    try {
      bought = await Promise.all([a.api.purchase(buyer.token, product.id), a.api.purchase(buyer.token, product.id)]);
      expect(tally(bought)).toEqual({ '201': 2 });
      // b never placed them and its orders' database has neither: only the gate knows them.
      paying = pay(b, buyer.token, orderIdOf(bought[0] as Answer));
      cancelling = cancel(b, buyer.token, orderIdOf(bought[1] as Answer));
      await sleep(300);
    } finally {
      pipeline?.consumer?.start();
    }
    expect((await paying)?.body['order']).toMatchObject({ id: orderIdOf(bought[0] as Answer), status: 'paid' });
    expect((await cancelling)?.body['order']).toMatchObject({ id: orderIdOf(bought[1] as Answer), status: 'cancelled' });
    expect((await a.api.call<{ balanceCents: number }>('GET', '/v1/me', { token: buyer.token })).body.balanceCents).toBe(10_000 - 700);
    await expectInvariant(a.api, product.id, bought);
  });
});

describe('redis-lock: the checks that need no lock', () => {
  it('refuses what a plain read decides without taking the lock or moving the fence', async () => {
    const [buyer, other] = await b.api.createBuyers(2);
    if (!buyer || !other) throw new Error('no buyers');
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const earlier = new Date(Date.now() - 3_600_000).toISOString();
    const ended = await b.api.createProduct({ stock: 5, strategy: 'redis-lock' });
    expect((await b.api.admin('POST', `/v1/admin/products/${ended.id}/end`)).status).toBe(200);
    const notOpen = await b.api.createProduct({ stock: 5, strategy: 'redis-lock', opensAt: later });
    const oldAccounts = await b.api.createProduct({ stock: 5, strategy: 'redis-lock', accountsCreatedBefore: earlier });
    const limited = await b.api.createProduct({ stock: 5, strategy: 'redis-lock', perBuyerLimit: 1 });
    expect((await b.api.purchase(buyer.token, limited.id)).status).toBe(201);
    const scarce = await b.api.createProduct({ stock: 1, strategy: 'redis-lock' });
    expect((await b.api.purchase(other.token, scarce.id)).status).toBe(201);

    const cases = [
      { product: ended, quantity: 1, code: '409 SALE_ENDED' },
      { product: notOpen, quantity: 1, code: '409 SALE_NOT_OPEN' },
      { product: oldAccounts, quantity: 1, code: '403 ACCOUNT_TOO_NEW' },
      { product: limited, quantity: 1, code: '409 LIMIT_EXCEEDED' },
      { product: scarce, quantity: 1, code: '409 SOLD_OUT' },
    ];
    for (const { product, quantity, code } of cases) {
      const fence = await fenceOf(product.id);
      const lock = await holdLock(product.id);
      try {
        // Were the lock taken first, each would wait REDIS_LOCK_WAIT_MS and hear CONTENTION.
        const answers = await storm(5, () => b.api.purchase(buyer.token, product.id, quantity));
        expect(answers.map(codeOf), product.id).toEqual(Array(5).fill(code));
        expect(await redis.get(lock.key)).toBe(lock.token);
        expect(await fenceOf(product.id)).toBe(fence);
      } finally {
        await redis.del(lock.key);
      }
    }
    // The lock free again, a request the checks pass takes it and moves the fence.
    const fence = await fenceOf(scarce.id);
    expect((await b.api.admin('PATCH', `/v1/admin/products/${scarce.id}`, { addStock: 1 })).status).toBe(200);
    expect((await b.api.purchase(buyer.token, scarce.id)).status).toBe(201);
    expect(await fenceOf(scarce.id)).not.toBe(fence);
    for (const product of [ended, notOpen, oldAccounts, limited, scarce]) await expectInvariant(b.api, product.id, []);
  });
});

interface StormFigures {
  readonly honest: Readonly<Record<string, number>>;
  readonly looper: Readonly<Record<string, number>>;
  /** The looper's requests the rate limiter let through, and the limiter's windows meanwhile. */
  readonly looperAdmitted: number;
  readonly windows: number;
}

/** Honest buyers: waves of {@link WAVE} every {@link WAVE_GAP_MS}, one purchase each. */
const WAVES = 100;
const WAVE = 2;
const WAVE_GAP_MS = 10;

/**
 * Honest buyers arrive in waves over a second, one purchase each, for a product that does not
 * sell out; with `looping`, one more buyer loops hold → cancel on the same product with 8 loops at
 * once meanwhile, ignoring `Retry-After`.
 */
async function contentionStorm(t: TestServer, strategy: string, looping: boolean): Promise<StormFigures> {
  const product = await t.api.createProduct({ stock: 1_000, strategy });
  const honest = await t.api.createBuyers(WAVES * WAVE);
  const [looper] = await t.api.createBuyers(1);
  if (!looper) throw new Error('no looper');
  let storming = true;
  const looperAnswers: Answer[] = [];
  const looperGrants: Answer[] = [];
  const loop = async (): Promise<void> => {
    while (storming) {
      const held = await t.api.purchase(looper.token, product.id);
      looperAnswers.push(held);
      if (held.status === 201) {
        looperGrants.push(held);
        looperAnswers.push(await cancel(t, looper.token, orderIdOf(held)));
      } else if (held.status === 429) {
        await sleep(10);
      }
    }
  };
  const start = Date.now();
  const loops = looping ? Array.from({ length: 8 }, () => loop()) : [];
  if (looping) await sleep(100);
  const waves: Promise<Answer[]>[] = [];
  for (let wave = 0; wave < WAVES; wave += 1) {
    waves.push(storm(WAVE, (i) => t.api.purchase((honest[wave * WAVE + i] as { token: string }).token, product.id)));
    await sleep(WAVE_GAP_MS);
  }
  const answers = (await Promise.all(waves)).flat();
  storming = false;
  await Promise.all(loops);
  const windows = windowsBetween(start, Date.now());
  await expectInvariant(t.api, product.id, [...answers, ...looperGrants]);
  return {
    honest: tally(answers),
    looper: tally(looperAnswers),
    looperAdmitted: looperAnswers.filter((answer) => answer.body['code'] !== 'RATE_LIMITED').length,
    windows,
  };
}

describe.each(['optimistic', 'event-sourced'])('%s: one buyer looping hold → cancel', (strategy) => {
  it("is held to the per-buyer limits, and the invariant holds; honest buyers' CONTENTION is reported with and without it", async () => {
    const alone = await contentionStorm(a, strategy, false);
    const limitedLooper = await contentionStorm(a, strategy, true);
    const freeLooper = await contentionStorm(b, strategy, true);
    console.info(
      `${strategy}: honest buyers' answers alone ${JSON.stringify(alone.honest)}; ` +
        `beside a looper held to the limits ${JSON.stringify(limitedLooper.honest)} (looper ${JSON.stringify(limitedLooper.looper)}); ` +
        `beside a looper with no limits ${JSON.stringify(freeLooper.honest)} (looper ${JSON.stringify(freeLooper.looper)})`,
    );
    expect(limitedLooper.looper['429 RATE_LIMITED'] ?? 0).toBeGreaterThan(0);
    expect(limitedLooper.looper['429 TOO_MANY_IN_FLIGHT'] ?? 0).toBeGreaterThan(0);
    expect(limitedLooper.looperAdmitted).toBeLessThanOrEqual(RATE_LIMIT * limitedLooper.windows);
  });
});
