/**
 * The bench engine, in-process: against a running server (`target`), per strategy and run, it
 * creates a product and its buyers through the admin API, fires the scenario, lets the server
 * settle, audits, and measures (a run reported interval by interval, such as the soak, reads the
 * server's memory and descriptors as it goes); the floor storm runs first in each round. Before the first round
 * the server (and, each round, the floor) is warmed up with storms that are not measured. The CLI
 * (`bench.command.ts`) adds the child server and the reports; tests call {@link runBench} directly.
 */
import { cpus, release, totalmem, type as osType } from 'node:os';
import { readFileSync } from 'node:fs';
import { AdminApi, type Buyer } from './client.js';
import { auditRun, settle, type RunAudit } from './audit.js';
import { watchDatabases, type DbWork } from './db-stats.js';
import { cpuMicrosPerAnswer, processCpuMs, scrapedCpuMs } from './process-cpu.js';
import type { ChildEndpoint } from './floor.js';
import { intervalEnds, seriesOf, type RunSeries } from './intervals.js';
import { drainNotes, markPipeline, measureDrain, type PipelineDrain } from './pipeline-drain.js';
import { abandons, fire, newProgress, RETRY_ROUND, type FireResult, type Progress } from './runner.js';
import { LONG_HOLD_SECONDS, type Scenario } from './scenarios.js';
import { sampleWhile } from './server-resources.js';
import { chooseStrategies, describeSkipped, type SkippedStrategy } from './strategy-choice.js';
import {
  fairnessOf,
  latencyOf,
  outcomesOf,
  wallSecondsOf,
  type LatencySummary,
  type Outcomes,
  type RequestRecord,
} from './stats.js';

export interface TargetInfo {
  readonly url: string;
  readonly adminToken: string;
  readonly db: { readonly baseUrl: string; readonly prefix: string } | undefined;
  /** PID of the server under test when it runs on this machine (its CPU is then reported). */
  readonly pid?: number | undefined;
  /**
   * Without a PID: the `/metrics` of every process of the target (the API's, and each service's
   * of a split install), whose process CPU is summed for the CPU per answer.
   */
  readonly cpuFrom?: readonly string[];
}

export interface BenchHooks {
  /** After the product and buyers exist, before the barrier (tests corrupt a stock row here). */
  afterSetup?(context: { productId: string; strategy: string }): Promise<void>;
  /** After the run settled, before the audit (tests delete an order here). */
  beforeAudit?(context: { productId: string; strategy: string; records: readonly RequestRecord[] }): Promise<void>;
}

export interface BenchOptions {
  readonly scenario: Scenario;
  /** `'all'`: every strategy the server has available (`/healthz` → `strategies`). */
  readonly strategies: 'all' | readonly string[];
  readonly target: TargetInfo;
  readonly runs?: number;
  /** Starts the floor endpoint for each round; `undefined`: no floor. */
  readonly floor?: () => Promise<ChildEndpoint>;
  /** Buyers of each unmeasured warm-up storm (0 or absent: no warm-up). */
  readonly warmupBuyers?: number;
  /** Called about 4 times a second with a one-line status, and with `final: true` at the end of a run. */
  readonly progress?: (line: string, final: boolean) => void;
  readonly hooks?: BenchHooks;
}

export interface CheckoutFigures {
  readonly payAvailable: boolean;
  /** Units paid at the end (the audit's `paid`). */
  readonly sold: number;
  readonly expired: number;
  /** Purchases won by a buyer who had been told `SOLD_OUT` first: units that came back and sold again. */
  readonly resold: number;
  readonly abandoned: number;
  readonly payAnswers: Readonly<Record<string, number>>;
}

export interface RunResult {
  readonly strategy: string;
  readonly run: number;
  readonly productId: string;
  readonly buyers: number;
  readonly stock: number;
  readonly outcomes: Outcomes;
  readonly latency: LatencySummary;
  readonly wallSeconds: number;
  readonly answersPerSecond: number;
  readonly salesPerSecond: number;
  readonly fairness: number | null;
  readonly audit: RunAudit;
  readonly db: DbWork | null;
  readonly checkout: CheckoutFigures | null;
  /** This run's p99 over the floor's p99 in the same round (`null` without a floor). */
  readonly floorRatioP99: number | null;
  /** CPU the server process spent per answer during the storm, µs (`null`: not on this machine). */
  readonly serverCpuUsPerAnswer: number | null;
  /** The order pipeline's drain after the storm (`null`: this run's orders did not go through one). */
  readonly pipeline: PipelineDrain | null;
  /** The run interval by interval, with the server's memory and descriptors (only when the scenario has `intervalSeconds`). */
  readonly series?: RunSeries | undefined;
  readonly notes: readonly string[];
}

export interface FloorRun {
  readonly run: number;
  readonly outcomes: Outcomes;
  readonly latency: LatencySummary;
  readonly wallSeconds: number;
  readonly answersPerSecond: number;
  /** CPU the floor process spent per answer, µs. */
  readonly serverCpuUsPerAnswer: number | null;
}

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGb: number;
  readonly os: string;
  readonly node: string;
  readonly somaxconn: string;
  readonly tcpMaxSynBacklog: string;
}

export interface BenchReport {
  readonly scenario: Scenario;
  readonly startedAt: string;
  readonly machine: Machine;
  readonly target: string;
  readonly strategies: readonly string[];
  /** Strategies asked for that the server does not have, and why (with `all`: those it lacks only a setting for). */
  readonly unavailable: readonly SkippedStrategy[];
  readonly runs: number;
  /** Buyers of each warm-up storm before measuring (0: none). */
  readonly warmupBuyers: number;
  readonly floor: readonly FloorRun[];
  readonly results: readonly RunResult[];
  /** Per strategy, the run with the median p99 (with one run: that run). */
  readonly summary: readonly RunResult[];
  readonly floorSummary: FloorRun | null;
}

const BALANCE_CENTS = 10_000_000;
/** The floor answers every request alike: any product id will do. */
const FLOOR_PRODUCT_ID = '00000000-0000-7000-8000-000000000000';
/** Warm-up storms per strategy (and per floor process). */
const WARMUP_STORMS = 3;
const PRICE_CENTS = 1000;

export function describeMachine(): Machine {
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return 'n/a';
    }
  };
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGb: Math.round(totalmem() / 1024 ** 3),
    os: `${osType()} ${release()}`,
    node: process.version,
    somaxconn: read('/proc/sys/net/core/somaxconn'),
    tcpMaxSynBacklog: read('/proc/sys/net/ipv4/tcp_max_syn_backlog'),
  };
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const { scenario, target } = options;
  const runs = Math.max(1, options.runs ?? 1);
  const admin = new AdminApi(target.url, target.adminToken);
  const db = target.db ? watchDatabases(target.db.baseUrl, target.db.prefix) : undefined;
  const startedAt = new Date().toISOString();
  try {
    const health = await admin.health().catch((error: unknown) => {
      throw new Error(`cannot reach the server under test at ${target.url}/healthz: ${String(error)}`, { cause: error });
    });
    const { strategies, unavailable } = await chooseStrategies(admin, options.strategies, health.strategies);
    if (strategies.length === 0) {
      throw new Error(`none of the strategies asked for is available: ${describeSkipped(unavailable)}; the server has: ${health.strategies.join(', ')}`);
    }
    const warmupBuyers = options.warmupBuyers ?? 0;
    if (warmupBuyers > 0) await warmUp(options, admin, strategies, warmupBuyers);
    const floor: FloorRun[] = [];
    const results: RunResult[] = [];
    for (let run = 1; run <= runs; run += 1) {
      let floorRun: FloorRun | undefined;
      if (options.floor) {
        floorRun = await runFloor(options, options.floor, run, runs);
        floor.push(floorRun);
      }
      for (const strategy of strategies) {
        const result = await runStrategy(options, admin, db, strategy, run, runs, floorRun);
        results.push(result);
      }
    }
    return {
      scenario,
      startedAt,
      machine: describeMachine(),
      target: target.url,
      strategies,
      unavailable,
      runs,
      warmupBuyers,
      floor,
      results,
      // The figure a run is judged by: its p99 against its own round's floor, or p99 without one.
      summary: strategies.map((strategy) =>
        median(results.filter((result) => result.strategy === strategy), (result) => result.floorRatioP99 ?? result.latency.p99),
      ),
      floorSummary: floor.length > 0 ? median(floor, (run) => run.latency.p99) : null,
    };
  } finally {
    await db?.close();
    await admin.close();
  }
}

/** The median run by `figure` (the lower middle one of an even count). */
function median<T>(runs: readonly T[], figure: (run: T) => number): T {
  const sorted = [...runs].sort((a, b) => figure(a) - figure(b));
  const median = sorted[Math.floor((sorted.length - 1) / 2)];
  if (!median) throw new Error('no runs');
  return median;
}

/** Ticks the progress line while `work` runs. */
async function withProgress<T>(
  options: BenchOptions,
  label: string,
  total: number,
  progress: Progress,
  work: () => Promise<T>,
): Promise<T> {
  const started = Date.now();
  const line = (): string =>
    `${label} (${total} buyers): sent ${progress.sent} · answered ${progress.answered} · 2xx ${progress.ok} · refused ${progress.refused} · ` +
    `shed ${progress.shed} · conn errors ${progress.errors} · ${((Date.now() - started) / 1000).toFixed(1)} s`;
  return ticking(options, line, work);
}

/** Shows the wait for the order pipeline on the progress line (it can take a while after a hot run), then its result. */
async function drainWithProgress(options: BenchOptions, label: string, work: () => Promise<PipelineDrain | null>): Promise<PipelineDrain | null> {
  const started = Date.now();
  const line = (): string => `${label}: order pipeline draining · ${((Date.now() - started) / 1000).toFixed(1)} s`;
  const drain = await ticking(options, line, work, false);
  if (drain) {
    const verdict = drain.drained ? 'drained' : 'NOT drained';
    options.progress?.(`${label}: order pipeline ${verdict} ${(drain.drainMs / 1000).toFixed(2)} s after the storm`, true);
  }
  return drain;
}

/** Rewrites the progress line every 250 ms while `work` runs; `final`: leave its last state printed. */
async function ticking<T>(options: BenchOptions, line: () => string, work: () => Promise<T>, final = true): Promise<T> {
  const report = options.progress;
  const timer = report ? setInterval(() => report(line(), false), 250) : undefined;
  try {
    return await work();
  } finally {
    if (timer) clearInterval(timer);
    if (final) report?.(line(), true);
  }
}

/**
 * Runs every strategy's purchase path before anything is measured. V8 compiles a function only
 * after it has run a while, and a storm of 1,000 buyers is over before that: unwarmed, the first
 * strategy of the first round measures the compiler, not the strategy (2× the floor instead of
 * 1.1–1.6× for `atomic` here). Each strategy gets a few storms on products of its own, shaped
 * like the scenario ({@link warmUpStock}); they are not reported.
 *
 * Each warm-up storm is set up and audited as a measured run is (new product, new buyers, settle,
 * audit, the order check): code that V8 optimizes on storms alone is deoptimized by the first
 * audit's requests ("wrong map": requests and replies of other routes and another client).
 */
async function warmUp(options: BenchOptions, admin: AdminApi, strategies: readonly string[], buyerCount: number): Promise<void> {
  const target = new URL(options.target.url);
  for (const strategy of strategies) {
    for (let storm = 1; storm <= WARMUP_STORMS; storm += 1) {
      const product = await admin.createProduct({
        name: `bench warm-up ${strategy} ${storm}`,
        priceCents: PRICE_CENTS,
        stock: warmUpStock(options.scenario, buyerCount),
        perBuyerLimit: null,
        holdSeconds: LONG_HOLD_SECONDS,
        strategy,
      });
      const buyers = await admin.createBuyers(buyerCount, BALANCE_CENTS, `bench-warmup-${strategy}-${storm}-`);
      const records = await warmingStorm(options, `${strategy} ${storm}/${WARMUP_STORMS}`, target, product.id, buyers);
      await settle(admin);
      // Run for its requests, not its verdict (naive oversells by design); measured runs report theirs.
      await auditRun(admin, product.id, orderIdsOf(records));
    }
  }
}

/**
 * The scenario's own share of units to buyers, at the warm-up's size (at least 1): a herd's
 * warm-up is a herd, so the paths it measures (buyers waiting in line for the last unit, refusals
 * stored after the claim) are the ones V8 has optimized. A warm-up with a tenth as many units as
 * buyers, whatever the scenario, leaves the herd's first measured round the slowest of its set
 * (9 sets of 12).
 */
function warmUpStock(scenario: Scenario, buyerCount: number): number {
  return Math.max(1, Math.round((scenario.stock * buyerCount) / Math.max(1, scenario.buyers)));
}

/** The order ids of the purchases that were answered 2xx. */
function orderIdsOf(records: readonly RequestRecord[]): string[] {
  return records.flatMap((record) => (record.kind === 'purchase' && record.orderId !== undefined ? [record.orderId] : []));
}

/** One unmeasured storm of `buyers` on `target`; its records. */
async function warmingStorm(
  options: BenchOptions,
  label: string,
  target: URL,
  productId: string,
  buyers: readonly Buyer[],
): Promise<readonly RequestRecord[]> {
  const scenario: Scenario = { ...options.scenario, kind: 'storm', buyers: buyers.length, perBuyerLimit: null };
  const progress = newProgress();
  const fired = await withProgress(options, `[warm-up] ${label}`, buyers.length, progress, () => fire({ target, scenario, productId, buyers, progress }));
  return fired.records;
}

async function runFloor(options: BenchOptions, start: () => Promise<ChildEndpoint>, run: number, runs: number): Promise<FloorRun> {
  const { scenario } = options;
  const endpoint = await start();
  try {
    const fakeBuyers = (count: number): Buyer[] => Array.from({ length: count }, (_, index) => ({ id: String(index), token: 'f'.repeat(180) }));
    // The floor process is new each round: it gets the same warm-up as the server.
    const warmupBuyers = options.warmupBuyers ?? 0;
    for (let storm = 1; warmupBuyers > 0 && storm <= WARMUP_STORMS; storm += 1) {
      await warmingStorm(options, `floor ${storm}/${WARMUP_STORMS}`, new URL(endpoint.url), FLOOR_PRODUCT_ID, fakeBuyers(warmupBuyers));
    }
    const progress = newProgress();
    const cpuBefore = processCpuMs(endpoint.pid);
    const fired = await withProgress(options, `[${scenario.name}] floor run ${run}/${runs}`, scenario.buyers, progress, () =>
      fire({
        target: new URL(endpoint.url),
        scenario: { ...scenario, kind: scenario.kind === 'hot' ? 'hot' : 'storm' },
        productId: FLOOR_PRODUCT_ID,
        buyers: fakeBuyers(scenario.buyers),
        progress,
      }),
    );
    const cpuAfter = processCpuMs(endpoint.pid);
    const wallSeconds = scenario.kind === 'hot' ? fired.durationSeconds : wallSecondsOf(fired.records);
    const outcomes = outcomesOf(fired.records, scenario.buyers);
    return {
      run,
      outcomes,
      latency: latencyOf(fired.records),
      wallSeconds,
      answersPerSecond: wallSeconds > 0 ? round(fired.records.length / wallSeconds) : 0,
      serverCpuUsPerAnswer: cpuMicrosPerAnswer(cpuBefore, cpuAfter, fired.records),
    };
  } finally {
    await endpoint.stop();
  }
}

async function runStrategy(
  options: BenchOptions,
  admin: AdminApi,
  db: ReturnType<typeof watchDatabases> | undefined,
  strategy: string,
  run: number,
  runs: number,
  floorRun: FloorRun | undefined,
): Promise<RunResult> {
  const { scenario } = options;
  const notes: string[] = [];
  const product = await admin.createProduct({
    name: `bench ${scenario.name} ${strategy} run ${run}`,
    priceCents: PRICE_CENTS,
    stock: scenario.stock,
    perBuyerLimit: scenario.perBuyerLimit,
    holdSeconds: scenario.holdSeconds,
    strategy,
  });
  const buyers = await admin.createBuyers(scenario.buyers, BALANCE_CENTS, `bench-${strategy}-`);
  await options.hooks?.afterSetup?.({ productId: product.id, strategy });

  await db?.begin();
  const pipelineMark = await markPipeline(admin);
  const progress = newProgress();
  const cpuBefore = await targetCpuMs(options.target);
  const storm = (): Promise<FireResult> =>
    withProgress(options, `[${scenario.name}] ${strategy} run ${run}/${runs}`, scenario.buyers, progress, () =>
      fire({ target: new URL(options.target.url), scenario, productId: product.id, buyers, progress }),
    );
  const { intervalSeconds } = scenario;
  // A run reported interval by interval reads the server's memory and descriptors as it goes.
  const { result: fired, samples } =
    intervalSeconds === undefined
      ? { result: await storm(), samples: undefined }
      : await sampleWhile(admin, intervalEnds(scenario.durationSeconds, intervalSeconds), storm);
  const cpuAfter = await targetCpuMs(options.target);
  // Before the DB reading and the audit: the consumer's writes after the storm are this run's work.
  const pipeline = pipelineMark ? await drainWithProgress(options, `[${scenario.name}] ${strategy} run ${run}/${runs}`, () => measureDrain(admin, pipelineMark)) : null;
  await settle(admin);
  // Hot cycles through the buyers for a while: only those it reached are owed an answer.
  const reached = scenario.kind === 'hot' ? new Set(fired.records.map((record) => record.buyer)).size : scenario.buyers;
  const outcomes = outcomesOf(fired.records, reached);
  const dbWork = db ? await db.end(outcomes.sold) : null;
  await options.hooks?.beforeAudit?.({ productId: product.id, strategy, records: fired.records });
  const orderIds = orderIdsOf(fired.records);
  const audit = await auditRun(admin, product.id, orderIds);
  if (!db) notes.push('DB work n/a: no database URL for this target (pass --db-url)');

  const latency = latencyOf(fired.records.filter((record) => record.kind === 'purchase'));
  const wallSeconds = scenario.kind === 'hot' ? fired.durationSeconds : wallSecondsOf(fired.records);
  let checkout: CheckoutFigures | null = null;
  if (scenario.kind === 'checkout') {
    const payAnswers: Record<string, number> = {};
    for (const record of fired.records) {
      if (record.kind !== 'pay') continue;
      const key = record.status === 0 ? (record.error ?? 'error') : `${record.status}${record.code ? ` ${record.code}` : ''}`;
      payAnswers[key] = (payAnswers[key] ?? 0) + 1;
    }
    const firstWinners = fired.records.filter((r) => r.kind === 'purchase' && r.orderId !== undefined && r.attempt < RETRY_ROUND);
    checkout = {
      payAvailable: !fired.payUnavailable,
      sold: audit.paid,
      expired: audit.expired,
      resold: fired.records.filter((r) => r.kind === 'purchase' && r.orderId !== undefined && r.attempt >= RETRY_ROUND).length,
      abandoned: firstWinners.filter((r) => abandons(r.buyer, scenario.abandonRate)).length,
      payAnswers,
    };
    if (fired.payUnavailable) {
      notes.push('pay is not available on this server (POST /v1/orders/:id/pay → 404): no unit was paid; holds expire and are resold');
    }
  }
  const fairness = scenario.kind === 'hot' ? null : fairnessOf(fired.records);
  const salesPerSecond = wallSeconds > 0 ? round(outcomes.sold / wallSeconds) : 0;
  // A hot run's rate counts only if the consumer kept pace; a storm's backlog is its nature.
  if (pipeline) notes.push(...drainNotes(pipeline, { sustained: scenario.kind === 'hot', wallSeconds, salesPerSecond }));
  const result: RunResult = {
    strategy,
    run,
    productId: product.id,
    buyers: scenario.buyers,
    stock: scenario.stock,
    outcomes,
    latency,
    wallSeconds: round(wallSeconds),
    answersPerSecond: wallSeconds > 0 ? round(outcomes.requests / wallSeconds) : 0,
    salesPerSecond,
    fairness: fairness === null ? null : round(fairness),
    audit,
    db: dbWork,
    checkout,
    floorRatioP99: floorRun && floorRun.latency.p99 > 0 ? round(latency.p99 / floorRun.latency.p99) : null,
    serverCpuUsPerAnswer: cpuMicrosPerAnswer(cpuBefore, cpuAfter, fired.records),
    pipeline,
    series:
      intervalSeconds !== undefined && samples !== undefined
        ? seriesOf({ records: fired.records, intervalSeconds, plannedSeconds: scenario.durationSeconds, ranSeconds: fired.durationSeconds, samples })
        : undefined,
    notes,
  };
  return result;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

/** The target's CPU so far (ms): its process's, or the sum over every process whose `/metrics` it names. */
async function targetCpuMs(target: TargetInfo): Promise<number | undefined> {
  if (target.pid !== undefined) return processCpuMs(target.pid);
  if (target.cpuFrom === undefined || target.cpuFrom.length === 0) return undefined;
  return scrapedCpuMs(target.cpuFrom, target.adminToken);
}
