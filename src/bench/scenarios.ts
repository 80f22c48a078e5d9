/**
 * The bench scenarios: the classic experiments (herd, drop, stampede), the checkout with payment
 * and expiry, the hot-product throughput run, and the soak (the hot run for ten minutes, reported
 * minute by minute). Sizes can be shrunk for CI with overrides.
 */

export const SCENARIO_NAMES = ['herd', 'drop', 'stampede', 'checkout', 'hot', 'soak'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export function isScenarioName(value: unknown): value is ScenarioName {
  return typeof value === 'string' && (SCENARIO_NAMES as readonly string[]).includes(value);
}

/**
 * - `storm`: every buyer sends one purchase at the barrier (retrying only shed answers).
 * - `checkout`: a storm, then winners pay after a think time (some abandon), holds expire, and
 *   losers retry until the window closes.
 * - `hot`: `connections` keep-alive connections cycle through the buyers for `durationSeconds`
 *   on a product that cannot run out (the soak is a long one).
 */
export type ScenarioKind = 'storm' | 'checkout' | 'hot';

export interface Scenario {
  readonly name: ScenarioName;
  readonly kind: ScenarioKind;
  readonly summary: string;
  readonly buyers: number;
  readonly stock: number;
  /** `null`: no per-buyer limit. */
  readonly perBuyerLimit: number | null;
  /**
   * Seconds a hold lasts. Checkout: short, so holds expire within the run. Elsewhere a day, so
   * no hold of an earlier run expires inside a later one and adds its work to that run's figures.
   */
  readonly holdSeconds: number;
  /** Checkout: how long losers keep retrying; hot: how long the run lasts. */
  readonly durationSeconds: number;
  /** Hot: concurrent keep-alive connections. */
  readonly connections: number;
  /**
   * Hot: report the run interval by interval, this many seconds each (purchases/s, errors, the
   * server's resident memory and open descriptors); absent: one figure for the whole run.
   */
  readonly intervalSeconds?: number | undefined;
  /** Checkout: share of winners who never pay. */
  readonly abandonRate: number;
  /** Checkout: winners think this long (ms, uniform in [min, max]) before paying. */
  readonly thinkMs: readonly [number, number];
  /** Checkout: the server's simulated payment step (`PAYMENT_DELAY_MS`, child server only). */
  readonly paymentDelayMs: number;
  /** What the original write-up saw, for the report. */
  readonly original: string;
}

/** A hold that outlasts any bench session (the longest the API allows). */
export const LONG_HOLD_SECONDS = 86_400;

const base = {
  perBuyerLimit: 1,
  holdSeconds: LONG_HOLD_SECONDS,
  durationSeconds: 0,
  connections: 0,
  abandonRate: 0,
  thinkMs: [0, 0] as const,
  paymentDelayMs: 0,
};

export const SCENARIOS: Readonly<Record<ScenarioName, Scenario>> = {
  herd: {
    ...base,
    name: 'herd',
    kind: 'storm',
    summary: 'thundering herd: 1,000 simultaneous buyers, 1 unit',
    buyers: 1000,
    stock: 1,
    original: 'k6, 1,000 VUs, Ryzen 7 7700X: 1 sale, ~500 clean 409, ~450–500 connection failures; avg 427 ms, max 1.14 s',
  },
  drop: {
    ...base,
    name: 'drop',
    kind: 'storm',
    summary: 'ticket drop: 2,000 buyers, 100 tickets',
    buyers: 2000,
    stock: 100,
    original: 'design record (SELECT … FOR UPDATE): "sequential processing acceptable"; no figures',
  },
  stampede: {
    ...base,
    name: 'stampede',
    kind: 'storm',
    summary: 'stampede: 10,000 buyers, 1,000 units',
    buyers: 10_000,
    stock: 1000,
    original: 'none (our own target: 0 connection errors, every buyer answered)',
  },
  checkout: {
    ...base,
    name: 'checkout',
    kind: 'checkout',
    summary: 'checkout: 2,000 buyers, 100 units, 20 ms payment, 30 % abandon, short holds, losers retry',
    buyers: 2000,
    stock: 100,
    holdSeconds: 3,
    durationSeconds: 12,
    abandonRate: 0.3,
    thinkMs: [100, 1000],
    paymentDelayMs: 20,
    original: 'atomic-update write-up: 20 ms payment inside the pessimistic lock held the pool ~22 ms per buyer',
  },
  hot: {
    ...base,
    name: 'hot',
    kind: 'hot',
    summary: 'hot product: 64 connections cycling through buyers, stock that cannot run out, 10 s',
    buyers: 5000,
    stock: 10_000_000,
    perBuyerLimit: null,
    durationSeconds: 10,
    connections: 64,
    original: 'none (ceiling of a strategy; compared with pgbench running the same statements)',
  },
  soak: {
    ...base,
    name: 'soak',
    kind: 'hot',
    summary: 'soak: the hot product held for a long run (10 minutes unless --duration), 64 connections, reported interval by interval',
    buyers: 5000,
    // Above what the fastest strategy sells in 10 minutes here (~4,500/s on redis-lua).
    stock: 10_000_000,
    perBuyerLimit: null,
    durationSeconds: 600,
    connections: 64,
    intervalSeconds: 60,
    original: 'none (our own target: the rate holds, memory and descriptors do not climb, nothing lost, audit clean)',
  },
};

export interface ScenarioOverrides {
  readonly buyers?: number;
  readonly stock?: number;
  readonly durationSeconds?: number;
  readonly connections?: number;
  readonly holdSeconds?: number;
  readonly intervalSeconds?: number;
}

/** The named scenario with CI-sized overrides applied. */
export function scenarioFor(name: ScenarioName, overrides: ScenarioOverrides = {}): Scenario {
  const scenario = SCENARIOS[name];
  return {
    ...scenario,
    buyers: overrides.buyers ?? scenario.buyers,
    stock: overrides.stock ?? scenario.stock,
    durationSeconds: overrides.durationSeconds ?? scenario.durationSeconds,
    connections: overrides.connections ?? scenario.connections,
    holdSeconds: overrides.holdSeconds ?? scenario.holdSeconds,
    intervalSeconds: overrides.intervalSeconds ?? scenario.intervalSeconds,
  };
}
