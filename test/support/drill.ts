/**
 * What the fault drills share: their size (reduced by default, so CI runs them in minutes;
 * `DRILL_SCALE=full` for the 2,000 buyers on 100 units of the issue, `DRILL_BUYERS` and
 * `DRILL_STOCK` to set either), a buyer who retries with the same `Idempotency-Key` until answered
 * for good, the check that money was taken once and only for what was sold, and the figures each
 * drill appends to `DRILL_REPORT` (one JSON line per drill; RELIABILITY.md is made from them).
 */
import { appendFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import type { Config } from '../../src/config.js';
import type { Sql } from '../../src/infra/database.js';
import type { Pipeline } from '../../src/pipeline/pipeline.js';
import type { ReconcileReport } from '../../src/pipeline/reconciler.js';
import type { Answer, Api } from './api.js';
import { createVhost } from './rabbitmq-vhost.js';
import { startPrivateRedis, type PrivateRedis } from './redis-server.js';
import { startTestServer, TEST_AMQP_URL, withPipeline, type TestServer } from './server.js';

function sizeFrom(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a positive whole number, got "${raw}"`);
  return value;
}

const FULL = process.env['DRILL_SCALE'] === 'full';

/** A drill's storm: buyers, and units on sale (limit 1 each). */
export const DRILL_SIZE: { readonly buyers: number; readonly stock: number } = {
  buyers: sizeFrom('DRILL_BUYERS', FULL ? 2_000 : 500),
  stock: sizeFrom('DRILL_STOCK', FULL ? 100 : 50),
};

/**
 * No attempt that gets an answer waits longer: the store deadline (10 s) plus a loaded machine's
 * slack. Not a speed bound: a hang.
 */
export const NO_HANG_MS = 20_000;

/** The pipeline's confirm timeout in a drill: short, so a rebuild or a reconcile comes within the drill's time. */
export const DRILL_CONFIRM_TIMEOUT_MS = 1_000;

/** A drill's own server: its private `redis-server` and RabbitMQ vhost, the test server on them, and its order pipeline. */
export interface DrillServer {
  readonly redis: PrivateRedis;
  readonly t: TestServer;
  readonly pipeline: Pipeline;
  stop(): Promise<void>;
}

/**
 * Starts a private `redis-server`, a vhost of the drill's own, and a test server with the
 * pipeline on them. `amqpPort` points the server at the broker through another port (a proxy the
 * drill cuts). The reconciler runs only when a drill asks (it reconciles by hand once its storm is
 * over).
 */
export async function startDrillServer(overrides: Partial<Config> = {}, options: { amqpPort?: number } = {}): Promise<DrillServer> {
  const vhost = await createVhost(TEST_AMQP_URL);
  const amqpUrl = new URL(vhost.url);
  if (options.amqpPort !== undefined) amqpUrl.port = String(options.amqpPort);
  const redis = await startPrivateRedis().catch(async (error: unknown) => {
    await vhost.remove();
    throw error;
  });
  let t: TestServer | undefined;
  const removeStores = async (): Promise<void> => {
    await redis.stop();
    await vhost.remove();
  };
  try {
    t = await startTestServer({
      ...withPipeline(),
      redisUrl: redis.url,
      amqpUrl: amqpUrl.toString(),
      confirmTimeoutMs: DRILL_CONFIRM_TIMEOUT_MS,
      reconcileIntervalMs: 3_600_000,
      ...overrides,
    });
    const pipeline = t.server.system.pipeline;
    if (!pipeline) throw new Error('the drill server has no pipeline');
    const server = t;
    return {
      redis,
      t: server,
      pipeline,
      stop: async () => {
        await server.stop();
        await removeStores();
      },
    };
  } catch (error) {
    await t?.stop();
    await removeStores();
    throw error;
  }
}

/**
 * Runs the reconciler once every hold granted so far is past its horizon (twice the confirm
 * timeout), so a hold whose order never came is voided and returned now, not on a later pass.
 */
export async function reconcileSettled(t: TestServer): Promise<ReconcileReport> {
  const reconciler = t.server.system.reconciler;
  if (!reconciler) throw new Error('the drill server has no reconciler');
  await sleep(2 * DRILL_CONFIRM_TIMEOUT_MS + 100);
  return reconciler.run();
}

/** `status code`, e.g. `201`, `409 SOLD_OUT`, `503 STORE_UNAVAILABLE`. */
export const codeOf = (answer: Answer): string =>
  `${answer.status}${typeof answer.body['code'] === 'string' ? ` ${answer.body['code']}` : ''}`;

/** Answers that tell the buyer to come back with the same key. */
export const COME_BACK = new Set([
  '503 STORE_UNAVAILABLE',
  '503 OUTCOME_UNKNOWN',
  '503 OVERLOADED',
  '409 IDEMPOTENCY_IN_PROGRESS',
  '409 CONTENTION',
]);

export const orderIdOf = (answer: Answer): string => (answer.body['order'] as { id: string }).id;

/** One buyer's attempts at one request. */
export interface BuyerRun {
  /** Every answer of every attempt, in order. */
  readonly answers: readonly Answer[];
  /** Attempts that ended without an answer: the connection was reset or refused (the process was killed). */
  readonly resets: number;
  /** The longest an attempt waited for its answer (ms). */
  readonly slowestMs: number;
  /** The last answer, if any. */
  readonly final: Answer | undefined;
  /** The buyer left after being told to come back (or after a reset), leaving the request unfinished. */
  readonly walkedAway: boolean;
}

export interface RetryPolicy {
  /**
   * Whether an attempt may end without an answer (the drill kills the process that serves it):
   * the buyer tries again shortly. Without it, an attempt that gets no answer fails the drill.
   */
  readonly resets?: boolean;
  /** Leaves after the first answer that says to come back, or the first reset: the buyer whose unit strands. */
  readonly walksAway?: boolean;
  /** Stops retrying after this long (ms); the run then ends on the last answer. */
  readonly patienceMs?: number;
  /** Answers that say to come back (default {@link COME_BACK}). */
  readonly comeBack?: ReadonlySet<string>;
}

/** Sends `attempt` until an answer that does not say to come back (retrying after `Retry-After`, with jitter). */
export async function untilAnswered(attempt: () => Promise<Answer>, policy: RetryPolicy = {}): Promise<BuyerRun> {
  const comeBack = policy.comeBack ?? COME_BACK;
  const until = performance.now() + (policy.patienceMs ?? 60_000);
  const answers: Answer[] = [];
  let resets = 0;
  let slowestMs = 0;
  for (;;) {
    const started = performance.now();
    let answer: Answer | undefined;
    try {
      answer = await attempt();
    } catch (error) {
      if (policy.resets !== true) throw error;
      resets += 1;
    }
    if (answer !== undefined) {
      slowestMs = Math.max(slowestMs, performance.now() - started);
      answers.push(answer);
      if (!comeBack.has(codeOf(answer))) return { answers, resets, slowestMs, final: answer, walkedAway: false };
    }
    if (policy.walksAway === true || performance.now() > until) {
      return { answers, resets, slowestMs, final: answers.at(-1), walkedAway: policy.walksAway === true };
    }
    const retryAfter = answer === undefined ? 0.3 : Number(answer.headers['retry-after'] ?? '1');
    await sleep(Math.max(0.1, retryAfter) * 1000 * (0.5 + Math.random()));
  }
}

/** Every answer of every attempt, by code. */
export function answersByCode(runs: readonly BuyerRun[]): Record<string, number> {
  const codes: Record<string, number> = {};
  for (const answer of runs.flatMap((run) => run.answers)) codes[codeOf(answer)] = (codes[codeOf(answer)] ?? 0) + 1;
  return codes;
}

/**
 * What every drill holds its buyers to: no `500` (nor any 5xx but `503`), every `503` with
 * `Retry-After`, no attempt waiting longer than `noHangMs`, and every buyer who stayed ending on an
 * answer that is not "come back".
 */
export function expectAnsweredWell(runs: readonly BuyerRun[], noHangMs: number, comeBack: ReadonlySet<string> = COME_BACK): void {
  const every = runs.flatMap((run) => run.answers);
  expect(every.filter((answer) => answer.status >= 500 && answer.status !== 503).map((answer) => JSON.stringify(answer.body))).toEqual([]);
  expect(every.filter((answer) => answer.status === 503 && answer.headers['retry-after'] === undefined)).toEqual([]);
  expect(Math.max(0, ...runs.map((run) => run.slowestMs))).toBeLessThan(noHangMs);
  const unfinished = runs.filter((run) => !run.walkedAway && (run.final === undefined || comeBack.has(codeOf(run.final))));
  expect(unfinished.map((run) => (run.final ? codeOf(run.final) : `no answer after ${run.resets} resets`))).toEqual([]);
}

/** The money side of a drill: what the ledger says for every order of `buyerIds`. */
export interface MoneyFigures {
  /** Orders `paid`, and the cents debited and not refunded for them. */
  readonly paid: number;
  /** Debits refunded (a payment whose hold was not sold). */
  readonly refunded: number;
}

/**
 * No buyer charged twice, none charged for a hold that was not sold: every `paid` order has one
 * debit of its amount and no refund; every other order's debit, if any, was refunded; every
 * buyer's balance is what they started with less their paid orders.
 */
export async function expectChargedOnce(
  databases: { readonly users: Sql; readonly orders: Sql },
  buyerIds: readonly string[],
  startingCents: number,
): Promise<MoneyFigures> {
  const orders = await databases.orders<{ id: string; buyer_id: string; status: string; amount_cents: number }[]>`
    select id, buyer_id, status, amount_cents from orders where buyer_id = any(${databases.orders.array([...buyerIds])}::uuid[])`;
  const ledger = await databases.users<{ order_id: string | null; user_id: string; kind: string; amount_cents: number }[]>`
    select order_id, user_id, kind, amount_cents from ledger_entries
     where user_id = any(${databases.users.array([...buyerIds])}::uuid[]) and kind in ('debit', 'refund')`;
  const net = new Map<string, number>();
  let refunded = 0;
  for (const entry of ledger) {
    const id = entry.order_id ?? 'none';
    net.set(id, (net.get(id) ?? 0) + (entry.kind === 'debit' ? entry.amount_cents : -entry.amount_cents));
    if (entry.kind === 'refund') refunded += 1;
  }
  const wrong: string[] = [];
  const known = new Set(orders.map((order) => order.id));
  for (const order of orders) {
    const charged = net.get(order.id) ?? 0;
    const owed = order.status === 'paid' ? order.amount_cents : 0;
    if (charged !== owed) wrong.push(`order ${order.id} is ${order.status}, charged ${charged} cents`);
  }
  for (const [id, charged] of net) if (!known.has(id) && charged !== 0) wrong.push(`${charged} cents charged for ${id}, which is no order`);
  expect(wrong).toEqual([]);
  const owedBy = new Map<string, number>();
  for (const order of orders) if (order.status === 'paid') owedBy.set(order.buyer_id, (owedBy.get(order.buyer_id) ?? 0) + order.amount_cents);
  const balances = await databases.users<{ id: string; balance_cents: number }[]>`
    select id, balance_cents from users where id = any(${databases.users.array([...buyerIds])}::uuid[])`;
  expect(balances.filter((user) => user.balance_cents !== startingCents - (owedBy.get(user.id) ?? 0))).toEqual([]);
  return { paid: orders.filter((order) => order.status === 'paid').length, refunded };
}

/** The figures of one drill run, as RELIABILITY.md's tables show them. */
export interface DrillFigures {
  readonly drill: string;
  readonly strategy: string;
  readonly buyers: number;
  readonly stock: number;
  /** Buyers whose request ended in a 2xx. */
  readonly answered2xx: number;
  /** Of those, orders found in PostgreSQL (equal, or the drill failed). */
  readonly ordersFound: number;
  readonly oversold: number;
  /** Units held for a request no buyer finished (the process died, or the buyer left), and how many came back. */
  readonly stranded: number;
  readonly returned: number;
  readonly deadLettered: number;
  /** Every answer of every attempt, by code. */
  readonly codes: Record<string, number>;
  readonly longestWaitMs: number;
  readonly [more: string]: unknown;
}

/** Appends the drill's figures to `DRILL_REPORT` as one JSON line (nothing without it). */
export async function reportDrill(figures: DrillFigures): Promise<void> {
  const file = process.env['DRILL_REPORT'];
  if (file === undefined || file === '') return;
  await appendFile(file, `${JSON.stringify({ ...figures, longestWaitMs: Math.round(figures.longestWaitMs) })}\n`);
}

/** Polls `done` every `everyMs` until it holds; throws `what` after `withinMs`. */
export async function waitFor(what: string, done: () => Promise<boolean> | boolean, withinMs = 30_000, everyMs = 50): Promise<void> {
  const until = Date.now() + withinMs;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`timed out waiting: ${what}`);
    await sleep(everyMs);
  }
}

/** How many of `orderIds` PostgreSQL has (the admin route reads the orders module's database). */
export async function ordersFound(api: Api, orderIds: readonly string[]): Promise<number> {
  const missing = await api.admin<{ missing: string[] }>('POST', '/v1/admin/orders/missing', { ids: orderIds });
  if (missing.status !== 200) throw new Error(`orders/missing: ${missing.status} ${JSON.stringify(missing.body)}`);
  return orderIds.length - missing.body.missing.length;
}

/** Counts `answer` under its code in `codes`. */
export function tallyInto(codes: Record<string, number>, answer: Answer): void {
  codes[codeOf(answer)] = (codes[codeOf(answer)] ?? 0) + 1;
}
