/**
 * The bench at CI sizes, in-process against a test server (the `--target` path): every available
 * strategy sells exactly the stock with every buyer answered, and the bench's audit catches an
 * oversell and a lost order. A soak reports every interval with the server's memory and
 * descriptors. On a server with the order pipeline, a redis-lua run reports its drain after the
 * storm.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBench, type BenchOptions, type TargetInfo } from '../src/bench/bench.js';
import { startFloor } from '../src/bench/floor.js';
import { seriesOf } from '../src/bench/intervals.js';
import { keptUp } from '../src/bench/pipeline-drain.js';
import { renderHtml } from '../src/bench/report-html.js';
import { renderTerminal } from '../src/bench/report-terminal.js';
import { scenarioFor } from '../src/bench/scenarios.js';
import type { RequestRecord } from '../src/bench/stats.js';
import { ADMIN_TOKEN, startTestServer, TEST_DATABASE_URL, withPipeline, type TestServer } from './support/server.js';

let t: TestServer;
let target: TargetInfo;
let available: string[];

beforeAll(async () => {
  // Default (small) pools: a second server joins it below, within the file's share of PostgreSQL (pg-budget.ts).
  t = await startTestServer({ sweepIntervalMs: 250 });
  target = { url: t.server.url, adminToken: ADMIN_TOKEN, db: { baseUrl: TEST_DATABASE_URL, prefix: t.config.databasePrefix } };
  const health = await t.api.call<{ strategies: string[] }>('GET', '/healthz');
  available = health.body.strategies;
});
afterAll(async () => {
  await t?.stop();
});

const bench = (options: Omit<BenchOptions, 'target'>) => runBench({ target, ...options });

describe('bench', () => {
  it('sells exactly the stock and answers every buyer on every safe strategy (drop, 200 buyers, 20 units)', async () => {
    const safe = available.filter((name) => name !== 'naive');
    const report = await bench({ scenario: scenarioFor('drop', { buyers: 200, stock: 20 }), strategies: safe });

    expect(report.summary.map((result) => result.strategy)).toEqual(safe);
    for (const result of report.summary) {
      expect(result.outcomes.sold, result.strategy).toBe(20);
      expect(result.outcomes.rejected, result.strategy).toEqual({ '409 SOLD_OUT': 180 });
      expect(result.outcomes.connectionErrors).toBe(0);
      expect(result.outcomes.serverErrors).toBe(0);
      expect(result.outcomes.unanswered).toBe(0);
      expect(result.audit).toMatchObject({ ok: true, oversold: 0, lost: 0, buyersOverLimit: 0, held: 20, remaining: 0 });
      expect(result.fairness).toBeGreaterThanOrEqual(0);
      expect(result.fairness).toBeLessThanOrEqual(1);
      expect(result.latency.p99).toBeGreaterThan(0);
      expect(result.latency.p50).toBeLessThanOrEqual(result.latency.p99);
      expect(result.db?.commits).toBeGreaterThanOrEqual(20);
    }
    const table = renderTerminal(report);
    const html = renderHtml(report);
    for (const name of safe) {
      expect(table).toContain(name);
      expect(html).toContain(name);
    }
    expect(html).not.toMatch(/<script|https?:\/\/(?!127\.0\.0\.1)/);
  });

  it('warms up unmeasured, measures the floor in the same run and reports p99 as a ratio to it', async () => {
    const productsBefore = await t.api.admin<{ products: unknown[] }>('GET', '/v1/products');
    const report = await bench({ scenario: scenarioFor('herd', { buyers: 100 }), strategies: ['atomic'], floor: startFloor, warmupBuyers: 40, runs: 2 });
    const [result] = report.summary;
    expect(report.warmupBuyers).toBe(40);
    // Three warm-up products of their own, plus one measured per round; their sales are not reported.
    const productsAfter = await t.api.admin<{ products: unknown[] }>('GET', '/v1/products');
    expect(productsAfter.body.products.length - productsBefore.body.products.length).toBe(5);
    // Each round's own ratio is shown beside the median's.
    const rounds = report.results.map((run) => run.floorRatioP99?.toFixed(2));
    expect(rounds).toHaveLength(2);
    expect(renderTerminal(report)).toContain(`×floor p99 by round: atomic ${rounds.join(', ')}`);
    expect(result?.outcomes.requests).toBe(100);
    expect(report.floorSummary?.outcomes.requests).toBe(100);
    expect(report.floorSummary?.outcomes.connectionErrors).toBe(0);
    expect(result?.outcomes.sold).toBe(1);
    expect(result?.fairness === 0 || result?.fairness === 1).toBe(true);
    expect(result?.floorRatioP99).toBeGreaterThan(0);
    // The floor is a child process of this test: its CPU per answer is read from /proc.
    expect(report.floorSummary?.serverCpuUsPerAnswer).toBeGreaterThanOrEqual(0);
  });

  it('catches an oversell when a stock row is corrupted under the strategy', async () => {
    const sql = t.server.system.stores.databases.inventory;
    const report = await bench({
      scenario: scenarioFor('drop', { buyers: 100, stock: 10 }),
      strategies: ['atomic'],
      hooks: {
        afterSetup: async ({ productId }) => {
          await sql`update products set remaining = remaining + 5 where id = ${productId}`;
        },
      },
    });
    const [result] = report.summary;
    expect(result?.outcomes.sold).toBe(15);
    expect(result?.audit.ok).toBe(false);
    expect(result?.audit.oversold).toBe(5);
    expect(result?.audit.violations['OVERSOLD']).toBe(1);
  });

  it('catches the naive strategy overselling', async ({ skip }) => {
    if (!available.includes('naive')) skip('naive is not registered on this server');
    const report = await bench({ scenario: scenarioFor('drop', { buyers: 200, stock: 10 }), strategies: ['naive'] });
    const [result] = report.summary;
    expect(result?.audit.ok).toBe(false);
    expect((result?.audit.oversold ?? 0) + (result?.audit.violations['STOCK_MISMATCH'] ?? 0)).toBeGreaterThan(0);
  });

  it('catches a 2xx whose order is missing from the database', async () => {
    const sql = t.server.system.stores.databases.orders;
    let deleted: string | undefined;
    const report = await bench({
      scenario: scenarioFor('drop', { buyers: 50, stock: 5 }),
      strategies: ['atomic'],
      hooks: {
        beforeAudit: async ({ records }) => {
          deleted = records.find((record) => record.orderId !== undefined)?.orderId;
          if (deleted) await sql`delete from orders where id = ${deleted}`;
        },
      },
    });
    const [result] = report.summary;
    expect(deleted).toBeDefined();
    expect(result?.audit.lost).toBe(1);
    expect(result?.audit.lostOrderIds).toEqual([deleted]);
    expect(result?.audit.ok).toBe(false);
  });

  it('runs the hot product for its duration without running out or overselling', async () => {
    const report = await bench({
      scenario: scenarioFor('hot', { buyers: 50, durationSeconds: 2, connections: 8 }),
      strategies: ['atomic'],
    });
    const [result] = report.summary;
    expect(result?.outcomes.sold).toBeGreaterThan(0);
    expect(result?.outcomes.connectionErrors).toBe(0);
    expect(result?.audit).toMatchObject({ ok: true, oversold: 0, lost: 0 });
    expect(result?.salesPerSecond).toBeGreaterThan(0);
    expect(result?.fairness).toBeNull();
  });

  it('reports a soak second by second, with the server memory and descriptors read over /metrics, and audits it clean', async () => {
    const report = await bench({
      scenario: scenarioFor('soak', { buyers: 50, durationSeconds: 3, connections: 8, intervalSeconds: 1 }),
      strategies: ['atomic'],
    });
    const [result] = report.summary;
    const series = result?.series;
    expect(series?.intervalSeconds).toBe(1);
    expect(series?.intervals.map((interval) => interval.fromSeconds)).toEqual([0, 1, 2]);
    for (const interval of series?.intervals ?? []) {
      expect(interval.sold).toBeGreaterThan(0);
      expect(interval.purchasesPerSecond).toBeGreaterThan(0);
      expect(interval).toMatchObject({ serverErrors: 0, connectionErrors: 0, shed: 0, rejected: {} });
      expect(interval.residentBytes).toBeGreaterThan(0);
      expect(interval.openFds).toBeGreaterThan(0);
    }
    expect(series?.intervals.reduce((sold, interval) => sold + interval.sold, 0)).toBe(result?.outcomes.sold);
    // The start, the intervals' planned ends at 1, 2 and 3 s (the last one races the run's end), after the last answer.
    expect(series?.samples.length).toBeGreaterThanOrEqual(4);
    const resources = series?.resources;
    expect(resources?.start?.atSeconds).toBe(0);
    expect(resources?.end?.atSeconds).toBeGreaterThanOrEqual(3);
    for (const sample of [resources?.start, resources?.end]) {
      expect(sample?.residentBytes).toBeGreaterThan(0);
      expect(sample?.openFds).toBeGreaterThan(0);
    }
    expect(resources?.peakResidentBytes).toBeGreaterThanOrEqual(Math.max(resources?.start?.residentBytes ?? 0, resources?.end?.residentBytes ?? 0));
    expect(resources?.peakOpenFds).toBeGreaterThanOrEqual(Math.max(resources?.start?.openFds ?? 0, resources?.end?.openFds ?? 0));
    expect(result?.audit).toMatchObject({ ok: true, oversold: 0, lost: 0 });

    const table = renderTerminal(report);
    expect(table).toContain('soak: the hot product held for a long run');
    expect(table).toContain('— 3 s, every 1 s');
    expect(table).toContain('atomic, every 1 s');
    expect(table).toMatch(/^0–1 s /m);
    expect(table).toMatch(/atomic server resident memory [\d.]+ MB at the start, [\d.]+ MB at the end \(peak [\d.]+ MB\) · open file descriptors \d+ at the start/);
    expect(renderHtml(report)).toContain('<h3>atomic, every 1 s</h3>');
    const json = JSON.parse(JSON.stringify(report)) as typeof report;
    expect(json.summary[0]?.series?.intervals).toHaveLength(3);
    expect(json.scenario.intervalSeconds).toBe(1);
  });

  it('says why it skips a strategy the server lacks a setting for', async () => {
    // No database watch: its flush waits would only lengthen the test.
    const report = await runBench({ target: { ...target, db: undefined }, scenario: scenarioFor('herd', { buyers: 20 }), strategies: ['atomic', 'redis-lua'] });
    expect(report.strategies).toEqual(['atomic']);
    expect(report.unavailable).toEqual([{ strategy: 'redis-lua', why: expect.stringContaining('needs REDIS_URL and AMQP_URL') }]);
    expect(report.summary[0]?.pipeline).toBeNull();
    expect(renderTerminal(report)).toContain('not available on this server (skipped): redis-lua (needs REDIS_URL and AMQP_URL');
  });

  it('runs the checkout: winners pay, abandoned holds expire and are resold', async () => {
    const report = await bench({
      scenario: { ...scenarioFor('checkout', { buyers: 60, stock: 10, durationSeconds: 5, holdSeconds: 1 }), thinkMs: [50, 200] },
      strategies: ['atomic'],
    });
    const [result] = report.summary;
    const checkout = result?.checkout;
    expect(checkout).toBeDefined();
    expect(result?.audit).toMatchObject({ oversold: 0, lost: 0 });
    expect((result?.audit.held ?? 0) + (result?.audit.paid ?? 0)).toBeLessThanOrEqual(10);
    if (checkout?.payAvailable) {
      expect(checkout.sold).toBeGreaterThan(0);
      expect(checkout.expired).toBeGreaterThan(0);
      expect(checkout.resold).toBeGreaterThan(0);
    } else {
      expect(result?.notes.join(' ')).toContain('pay is not available');
    }
  });
});

describe('bench intervals', () => {
  const answered = (atSeconds: number, status: number, code?: string): RequestRecord => ({
    buyer: 0,
    kind: 'purchase',
    attempt: 0,
    startedAt: atSeconds * 1000 - 5,
    writtenAt: atSeconds * 1000 - 4,
    latencyMs: 5,
    status,
    code,
    error: status === 0 ? 'ECONNRESET' : undefined,
    orderId: status === 201 ? 'order' : undefined,
  });
  const sample = (atSeconds: number, residentBytes: number, openFds: number) => ({ atSeconds, residentBytes, openFds, benchResidentBytes: 1 });

  it('counts each answer in the interval it came back in, and a late answer in the last one', () => {
    const series = seriesOf({
      records: [answered(0.5, 201), answered(1.9, 201), answered(2.1, 201), answered(3, 500), answered(4.5, 0), answered(5.1, 201), answered(5.15, 409, 'SOLD_OUT')],
      intervalSeconds: 2,
      plannedSeconds: 5,
      ranSeconds: 5.2,
      // The start, each interval's planned end (the last at 5 s, under load), after the last answer.
      samples: [sample(0, 100, 10), sample(2.01, 300, 12), sample(4.02, 200, 11), sample(5, 260, 12), sample(5.21, 250, 10)],
    });
    expect(series.intervals).toMatchObject([
      { fromSeconds: 0, toSeconds: 2, sold: 2, purchasesPerSecond: 1, serverErrors: 0, residentBytes: 300, openFds: 12 },
      { fromSeconds: 2, toSeconds: 4, sold: 1, purchasesPerSecond: 0.5, serverErrors: 1, residentBytes: 200, openFds: 11 },
      { fromSeconds: 4, toSeconds: 5.2, sold: 1, purchasesPerSecond: 0.83, connectionErrors: 1, rejected: { '409 SOLD_OUT': 1 }, residentBytes: 260, openFds: 12 },
    ]);
    expect(series.resources).toMatchObject({ start: { residentBytes: 100 }, end: { residentBytes: 250, openFds: 10 }, peakResidentBytes: 300, peakOpenFds: 12 });
  });
});

describe('bench on a server with the order pipeline', () => {
  let p: TestServer;
  let pipelineTarget: TargetInfo;
  beforeAll(async () => {
    p = await startTestServer({ sweepIntervalMs: 250, dbPoolSize: 4, ...withPipeline() });
    // No database watch: its flush waits would only lengthen the test.
    pipelineTarget = { url: p.server.url, adminToken: ADMIN_TOKEN, db: undefined };
  });
  afterAll(async () => {
    await p?.stop();
  });

  it('reports the drain of redis-lua runs only, before an audit that finds every order', async () => {
    const report = await runBench({ target: pipelineTarget, scenario: scenarioFor('drop', { buyers: 100, stock: 10 }), strategies: ['atomic', 'redis-lua'] });
    const [atomic, redisLua] = report.summary;
    expect(atomic?.pipeline).toBeNull();
    expect(redisLua?.outcomes.sold).toBe(10);
    expect(redisLua?.audit).toMatchObject({ ok: true, oversold: 0, lost: 0, held: 10, remaining: 0 });
    expect(redisLua?.pipeline).toMatchObject({ drained: true, gaveUp: null, confirmed: 10, deadLetters: 0 });
    expect(redisLua?.pipeline?.lastBatchSize).toBeGreaterThan(0);
    expect(renderTerminal(report)).toMatch(/redis-lua order pipeline drained \d+ ms after the storm/);
  });

  it('runs the hot product keyed on redis-lua and says whether the consumer kept up', async () => {
    let orderIds: string[] = [];
    const report = await runBench({
      target: pipelineTarget,
      scenario: scenarioFor('hot', { buyers: 20, durationSeconds: 1, connections: 4 }),
      strategies: ['redis-lua'],
      hooks: {
        beforeAudit: async ({ records }) => {
          orderIds = records.flatMap((record) => (record.orderId === undefined ? [] : [record.orderId]));
        },
      },
    });
    const [result] = report.summary;
    expect(result?.outcomes.sold).toBeGreaterThan(0);
    // An order id derived from an Idempotency-Key is a UUIDv8; a minted one is not.
    expect(orderIds.filter((id) => id.charAt(14) !== '8')).toEqual([]);
    expect(result?.outcomes.serverErrors).toBe(0);
    expect(result?.audit).toMatchObject({ ok: true, oversold: 0, lost: 0 });
    const drain = result?.pipeline;
    expect(drain?.drained).toBe(true);
    // Whichever it was on this machine, the report says it when the consumer fell behind.
    const behindNote = result?.notes.some((note) => note.startsWith('the consumer did not keep up'));
    expect(behindNote).toBe(drain ? !keptUp(drain) : false);
  });
});
