/**
 * Surviving the database: PostgreSQL restarted, and separately every connection of the test's
 * module databases terminated, in the middle of a storm, on every safe strategy (the restart on
 * `redis-lua` and `redis-lock` too, with a private Redis and the order pipeline). The process stays
 * up, no buyer is told 500 or left hanging, a buyer told to come back (`STORE_UNAVAILABLE`,
 * `OUTCOME_UNKNOWN`) and retrying with the same `Idempotency-Key` ends with one definitive answer
 * and never a second order, every 201 has its order, the audit is clean, and the product sells
 * again once the database is back.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/infra/database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/infra/embedded-postgres.js';
import type { StrategyName } from '../src/inventory/strategy-names.js';
import type { Answer } from './support/api.js';
import { codeOf, COME_BACK, reconcileSettled, reportDrill, startDrillServer, tallyInto, waitFor, type DrillServer } from './support/drill.js';
import { startTestServer, TEST_DATABASE_URL, type TestServer } from './support/server.js';
import { storm } from './support/storm.js';

const SAFE_STRATEGIES: readonly StrategyName[] = ['pessimistic', 'optimistic', 'atomic', 'queue', 'event-sourced'];
/** The restart runs on the Redis strategies too: the database restarts under the gate and the pipeline. */
const RESTART_STRATEGIES: readonly StrategyName[] = [...SAFE_STRATEGIES, 'redis-lua', 'redis-lock'];
const BUYERS = 400;
/**
 * Buyers arrive evenly over this long, so the outage (fired at the first eighth's answers, and
 * lasting longer than the rest of the window) lands in the middle of the storm on every strategy:
 * fired at once, `queue` answers all 400 before a restart has even stopped the server.
 */
const ARRIVALS_MS = 2_000;
/** The deadline the servers here answer within (`STORE_DEADLINE_MS`). */
const DEADLINE_MS = 3000;
/** No answer may take longer than this: the deadline, plus a loaded machine's slack. Not a speed bound: a hang. */
const NO_HANG_MS = DEADLINE_MS + 15_000;
/** Attempts a buyer makes while told to come back (each after `Retry-After`). */
const MAX_ATTEMPTS = 40;

const FINAL = new Set(['201', '409 SOLD_OUT']);

interface BuyerRun {
  readonly answers: readonly Answer[];
  readonly slowestMs: number;
  /** When each answer arrived (`performance.now()`). */
  readonly answeredAt: readonly number[];
}

/** One buyer: a keyed purchase, retried with the same key while told to come back; `answered` is told of the first answer. */
async function buyUntilAnswered(t: TestServer, token: string, productId: string, key: string, answered: () => void): Promise<BuyerRun> {
  const answers: Answer[] = [];
  const answeredAt: number[] = [];
  let slowestMs = 0;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    const started = performance.now();
    const answer = await t.api.purchase(token, productId, 1, { 'idempotency-key': key });
    if (attempt === 0) answered();
    answeredAt.push(performance.now());
    slowestMs = Math.max(slowestMs, performance.now() - started);
    answers.push(answer);
    if (!COME_BACK.has(codeOf(answer))) break;
    const retryAfter = Number(answer.headers['retry-after'] ?? '1');
    await sleep(Math.max(1, retryAfter) * 1000 * (0.5 + Math.random()));
  }
  return { answers, slowestMs, answeredAt };
}

/** Reads the audit once the stores answer again. */
async function auditWhenBack(t: TestServer, productId: string): Promise<{ ok: boolean; violations: unknown[]; products: { remaining: number; oversold: number }[] }> {
  for (let attempt = 0; ; attempt += 1) {
    const audit = await t.api.admin<{ ok: boolean; violations: unknown[]; products: { remaining: number; oversold: number }[] }>(
      'GET',
      `/v1/admin/audit?productId=${productId}`,
    );
    if (audit.status === 200) return audit.body;
    expect(audit.status).toBe(503);
    if (attempt > 60) throw new Error('the stores did not come back');
    await sleep(500);
  }
}

/**
 * The drill's storm on a product of `strategy`, `outage` fired once an eighth of the buyers have
 * had their first answer (mid-storm, however fast the strategy); returns each buyer's run and when
 * the outage ended.
 */
async function stormThrough(
  t: TestServer,
  strategy: StrategyName,
  outage: () => Promise<void>,
): Promise<{ runs: BuyerRun[]; productId: string; backAt: number; writtenAtBack: number }> {
  const product = await t.api.createProduct({ stock: BUYERS + 20, perBuyerLimit: 1, strategy });
  const buyers = await t.api.createBuyers(BUYERS);
  let answered = 0;
  let fire: () => void = () => undefined;
  const fired = new Promise<void>((resolve) => (fire = resolve));
  const outageDone = fired.then(async () => {
    await outage();
    return performance.now();
  });
  // On redis-lua: orders the consumer had written when the database came back.
  const writtenAtBack = outageDone.then(() => t.server.system.pipeline?.consumer?.stats.written ?? 0);
  const onAnswer = (): void => {
    answered += 1;
    if (answered === BUYERS / 8) fire();
  };
  const runs = await storm(BUYERS, async (i) => {
    await sleep((i * ARRIVALS_MS) / BUYERS);
    return buyUntilAnswered(t, buyers[i]?.token ?? '', product.id, `outage-${i}`, onAnswer);
  });
  return { runs, productId: product.id, backAt: await outageDone, writtenAtBack: await writtenAtBack };
}

/**
 * What every drill here must end with; then, with `DRILL_REPORT=<file>`, appends the drill's
 * figures to that file as a JSON line (RELIABILITY.md is made from them).
 */
async function expectSurvived(
  t: TestServer,
  drill: string,
  strategy: StrategyName,
  { runs, productId, backAt, writtenAtBack }: { runs: readonly BuyerRun[]; productId: string; backAt: number; writtenAtBack: number },
): Promise<void> {
  const every = runs.flatMap((run) => run.answers);
  // Never a 500, never a hang: every answer is final or says to come back.
  expect(every.filter((answer) => answer.status >= 500 && answer.status !== 503)).toEqual([]);
  expect(every.map(codeOf).filter((code) => !FINAL.has(code) && !COME_BACK.has(code))).toEqual([]);
  expect(Math.max(...runs.map((run) => run.slowestMs))).toBeLessThan(NO_HANG_MS);
  // The restart landed in the storm: buyers met it (on redis-lua the gate and the broker answer
  // without PostgreSQL, and the orders written once it was back say so instead, below).
  if (drill === 'restart' && strategy !== 'redis-lua') expect(every.filter((answer) => answer.status === 503).length).toBeGreaterThan(0);
  // Every buyer ends with a definitive answer.
  const finals = runs.map((run) => run.answers.at(-1));
  expect(finals.map((answer) => (answer ? codeOf(answer) : 'none')).filter((code) => !FINAL.has(code))).toEqual([]);
  // Every 201 (first or replayed) names the order its buyer holds: one per buyer, and it exists
  // (on redis-lua once the consumer, which waited the outage out, has written it).
  const orderIds = finals.filter((answer) => answer?.status === 201).map((answer) => (answer?.body['order'] as { id: string }).id);
  expect(new Set(orderIds).size).toBe(orderIds.length);
  const { pipeline } = t.server.system;
  if (pipeline) await waitFor('the pipeline drained', () => pipeline.drained().catch(() => false), 30_000);
  const missing = await t.api.admin<{ missing: string[] }>('POST', '/v1/admin/orders/missing', { ids: orderIds });
  expect(missing.body.missing).toEqual([]);
  // On redis-lua, no hold of the gate is left without its order (every buyer finished), and
  // nothing was dead-lettered.
  let drift = { stranded: 0, returned: 0 };
  let deadLettered = 0;
  let writtenAfterBack: number | undefined;
  if (strategy === 'redis-lua' && pipeline) {
    // The outage came while orders flowed: some were confirmed to buyers and written only once the database was back.
    writtenAfterBack = (pipeline.consumer?.stats.written ?? 0) - writtenAtBack;
    expect(writtenAfterBack).toBeGreaterThan(0);
    const found = (await reconcileSettled(t)).products.find((p) => p.productId === productId);
    expect(found).toMatchObject({ stranded: 0, unitsNotInPostgres: 0 });
    drift = { stranded: found?.stranded ?? 0, returned: found?.returned ?? 0 };
    deadLettered = (await pipeline.broker.depth()).dead;
    expect(deadLettered).toBe(0);
  }
  const audit = await auditWhenBack(t, productId);
  expect(audit.violations).toEqual([]);
  // The product sells again.
  const [late] = await t.api.createBuyers(1);
  const again = await t.api.purchase(late?.token ?? '', productId);
  expect(again.status).toBe(201);

  const codes: Record<string, number> = {};
  for (const answer of every) tallyInto(codes, answer);
  const salesAfter = runs.flatMap((run) => run.answers.flatMap((answer, i) => (answer.status === 201 && (run.answeredAt[i] ?? 0) > backAt ? [run.answeredAt[i] ?? 0] : [])));
  await reportDrill({
    drill,
    strategy,
    buyers: BUYERS,
    stock: BUYERS + 20,
    answered2xx: orderIds.length,
    ordersFound: orderIds.length - missing.body.missing.length,
    oversold: audit.products[0]?.oversold ?? 0,
    ...drift,
    deadLettered,
    codes,
    longestWaitMs: Math.max(...runs.map((run) => run.slowestMs)),
    firstSaleAfterBackMs: salesAfter.length === 0 ? null : Math.round(Math.min(...salesAfter) - backAt),
    attemptsPerBuyer: Math.max(...runs.map((run) => run.answers.length)),
    ...(writtenAfterBack === undefined ? {} : { writtenAfterBack }),
  });
}

describe('PostgreSQL restarted in the middle of a storm', () => {
  let directory: string;
  let database: EmbeddedDatabase;
  let drill: DrillServer;
  let t: TestServer;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'flashsale-outage-'));
    database = await startEmbeddedPostgres({ directory: join(directory, 'pg') });
    // The gate and the pipeline too (a private Redis, a vhost of its own), so the restart runs
    // under redis-lua and redis-lock.
    drill = await startDrillServer({ databaseUrl: database.url, storeDeadlineMs: DEADLINE_MS, sweepIntervalMs: 200 });
    t = drill.t;
  });
  afterAll(async () => {
    await drill?.stop();
    await database?.stop();
    if (directory) await rm(directory, { recursive: true, force: true });
  });

  for (const strategy of RESTART_STRATEGIES) {
    it(`answers every buyer and loses nothing on ${strategy}`, async () => {
      const stormed = await stormThrough(t, strategy, async () => {
        // A restart as an operator does it: fast shutdown (every session cut), then start again on the same port.
        await database.stop();
        // Meanwhile the server says which stores are down, within the deadline.
        const ready = await t.api.call('GET', '/readyz');
        expect(ready.status).toBe(503);
        expect(ready.body).toMatchObject({ code: 'NOT_READY', down: ['postgres:users', 'postgres:inventory', 'postgres:orders'] });
        await sleep(500);
        database = await startEmbeddedPostgres({ directory: join(directory, 'pg'), port: database.port });
      });
      await expectSurvived(t, 'restart', strategy, stormed);
    });
  }
});

describe("every connection of the modules' databases terminated in the middle of a storm", () => {
  let t: TestServer;
  const admin = connect(TEST_DATABASE_URL, 1, 'flashsale:outage-test');

  beforeAll(async () => {
    t = await startTestServer({ storeDeadlineMs: DEADLINE_MS, sweepIntervalMs: 200 });
  });
  afterAll(async () => {
    await t?.stop();
    await admin.end({ timeout: 5 });
  });

  for (const strategy of SAFE_STRATEGIES) {
    it(`answers every buyer and loses nothing on ${strategy}`, async () => {
      const prefix = t.config.databasePrefix;
      const stormed = await stormThrough(t, strategy, async () => {
        // Twice, a moment apart: connections opened again after the first are cut too.
        for (let round = 0; round < 2; round += 1) {
          await admin`
            select pg_terminate_backend(pid) from pg_stat_activity
             where datname like ${`${prefix}%`} and pid <> pg_backend_pid()`;
          await sleep(200);
        }
      });
      await expectSurvived(t, 'terminate', strategy, stormed);
    });
  }
});

describe('payments while every connection is cut', () => {
  let t: TestServer;
  const admin = connect(TEST_DATABASE_URL, 1, 'flashsale:outage-pay-test');

  beforeAll(async () => {
    t = await startTestServer({ storeDeadlineMs: DEADLINE_MS, sweepIntervalMs: 200 });
  });
  afterAll(async () => {
    await t?.stop();
    await admin.end({ timeout: 5 });
  });

  it('debits each order once and never keeps money for an order that is not paid', async () => {
    const PAYERS = 150;
    const price = 700;
    const product = await t.api.createProduct({ stock: PAYERS, priceCents: price });
    const buyers = await t.api.createBuyers(PAYERS, 10_000);
    const held = await storm(PAYERS, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id));
    const orderIds = held.map((answer) => (answer.body['order'] as { id: string }).id);
    const prefix = t.config.databasePrefix;
    const cut = sleep(200).then(async () => {
      for (let round = 0; round < 2; round += 1) {
        await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname like ${`${prefix}%`} and pid <> pg_backend_pid()`;
        await sleep(200);
      }
    });
    const finals = await storm(PAYERS, async (i) => {
      let answer: Answer | undefined;
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
        answer = await t.api.call('POST', `/v1/orders/${orderIds[i] ?? ''}/pay`, {
          token: buyers[i]?.token ?? '',
          headers: { 'idempotency-key': `pay-${i}` },
        });
        expect(answer.status === 200 || COME_BACK.has(codeOf(answer))).toBe(true);
        if (answer.status === 200) break;
        await sleep(1000 * (0.5 + Math.random()));
      }
      return answer;
    });
    await cut;
    expect(finals.map((answer) => answer?.status)).toEqual(finals.map(() => 200));
    const users = t.server.system.stores.databases.users;
    const ids = buyers.map((buyer) => buyer.id);
    const [debits] = await users<{ n: number; cents: number }[]>`
      select count(*)::int as n, coalesce(sum(amount_cents), 0)::int8 as cents from ledger_entries
       where user_id = any(${ids}::uuid[]) and kind = 'debit'`;
    expect(debits).toEqual({ n: PAYERS, cents: PAYERS * price });
    const [balances] = await users<{ total: number }[]>`select sum(balance_cents)::int8 as total from users where id = any(${ids}::uuid[])`;
    expect(balances?.total).toBe(PAYERS * (10_000 - price));
    const audit = await auditWhenBack(t, product.id);
    expect(audit.violations).toEqual([]);
  });
});
