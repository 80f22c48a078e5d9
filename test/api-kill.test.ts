/**
 * Fault drill: the API process killed with SIGKILL in the middle of a keyed storm, and started
 * again on the same port, on `redis-lua`, `redis-lock`, `atomic` and `queue`. The API runs as its
 * own process (`flashsale serve`, with the pipeline's worker in it, as one process deploys it);
 * this file's own server, on the same databases, keys and queues, only creates the product and
 * the buyers, reconciles and audits. One buyer in three who wins pays at once. Buyers whose
 * connection is reset (or refused while the API is down) retry with the same `Idempotency-Key`,
 * except one in five, who leave: the units they held strand, and come back when their holds
 * expire (a short hold here) or, on `redis-lua`, by the reconciler.
 *
 * After: every `201` has its order in PostgreSQL, no buyer has two, nothing is oversold, every
 * stranded unit is back in stock, nothing was dead-lettered, no buyer was charged twice or for a
 * hold that was not sold, and the audit is clean.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Api } from './support/api.js';
import {
  answersByCode,
  codeOf,
  COME_BACK,
  DRILL_SIZE,
  expectAnsweredWell,
  expectChargedOnce,
  NO_HANG_MS,
  orderIdOf,
  ordersFound,
  reconcileSettled,
  reportDrill,
  startDrillServer,
  untilAnswered,
  waitFor,
  type BuyerRun,
  type DrillServer,
} from './support/drill.js';
import { envOf, freePort, startFlashsale, stopAll, type FlashsaleProcess } from './support/flashsale-process.js';
import { ADMIN_TOKEN, type TestServer } from './support/server.js';
import { expectInvariant, storm } from './support/storm.js';

const STRATEGIES = ['redis-lua', 'redis-lock', 'atomic', 'queue'] as const;
/**
 * Short, so units held for a request no one finishes come back within the drill; longer than the
 * storm and the restart, so no unit is sold twice over (a winner's unpaid hold lapsing meanwhile).
 */
const HOLD_SECONDS = 15;
const PRICE = 1_200;
const BALANCE = 100_000;
const READY = 'flashsale listening on';

let drill: DrillServer;
let t: TestServer;
let port: number;
let env: Record<string, string>;
let api: FlashsaleProcess | undefined;
let client: Api;

beforeAll(async () => {
  // The API process writes the placed orders; this one only watches, reconciles and audits.
  drill = await startDrillServer({ worker: false, dbPoolSize: 4 });
  t = drill.t;
  port = await freePort();
  env = envOf(t.config, { PORT: String(port), HOST: '127.0.0.1', SWEEP_INTERVAL_MS: '200', STORE_DEADLINE_MS: '10000', DB_POOL_SIZE: '6' });
  api = await startFlashsale('serve', env, READY);
  client = new Api(`http://127.0.0.1:${port}`, ADMIN_TOKEN);
});
afterAll(async () => {
  await client?.close();
  await api?.stop();
  await stopAll();
  await drill?.stop();
});

interface Payment {
  readonly runs: readonly BuyerRun[];
  /** `200`, a refusal's code, or `order <status>` for an order found settled by looking at it. */
  readonly outcome: string;
  /** Its key answered "in progress" past the payer's patience: the attempt under it died with the process. */
  readonly keyStuck: boolean;
}

/** Payment answers that say to come back, but "in progress": a payer retries alone, so that is a claim of an attempt that died. */
const PAY_COME_BACK = new Set([...COME_BACK].filter((code) => code !== '409 IDEMPOTENCY_IN_PROGRESS'));

/**
 * A payer: pays with a key, retrying it while told to come back. A key whose attempt died with the
 * process stays claimed (`409 IDEMPOTENCY_IN_PROGRESS`) until the claim goes stale (three store
 * deadlines, 30 s here, past the 15 s hold): the payer then looks at the order, and pays again with a new key if it is still held (the debit is
 * keyed by the order id: a second attempt takes nothing more).
 */
async function pay(token: string, orderId: string, key: string): Promise<Payment> {
  const attempt = (withKey: string) => () => client.call('POST', `/v1/orders/${orderId}/pay`, { token, headers: { 'idempotency-key': withKey } });
  const first = await untilAnswered(attempt(key), { resets: true, comeBack: PAY_COME_BACK });
  const code = first.final ? codeOf(first.final) : 'none';
  if (code !== '409 IDEMPOTENCY_IN_PROGRESS') return { runs: [first], outcome: code, keyStuck: false };
  const { body } = await client.call<{ order?: { status: string } }>('GET', `/v1/orders/${orderId}`, { token });
  const status = body.order?.status ?? 'not found';
  if (status !== 'held') return { runs: [first], outcome: `order ${status}`, keyStuck: true };
  const again = await untilAnswered(attempt(`${key}-again`), { resets: true, comeBack: PAY_COME_BACK });
  return { runs: [first, again], outcome: again.final ? codeOf(again.final) : 'none', keyStuck: true };
}

describe.each(STRATEGIES)('the API killed with SIGKILL mid-storm and started again, on %s', (strategy) => {
  it('leaves no 2xx without its order, no order twice, no oversell, no unit stranded, no buyer charged twice', async () => {
    const { buyers: BUYERS, stock: STOCK } = DRILL_SIZE;
    const product = await t.api.createProduct({ stock: STOCK, perBuyerLimit: 1, priceCents: PRICE, holdSeconds: HOLD_SECONDS, strategy });
    const buyers = await t.api.createBuyers(BUYERS, BALANCE);

    // Killed once a third of the units are sold (a 201 seen by its buyer), and started again at once.
    let sold = 0;
    let kill: () => void = () => undefined;
    const killNow = new Promise<void>((resolve) => (kill = resolve));
    const outage = (async () => {
      await killNow;
      const killedAt = performance.now();
      await api?.stop('SIGKILL');
      api = await startFlashsale('serve', env, READY);
      return performance.now() - killedAt;
    })();
    const payments: Payment[] = [];
    const runs = await storm(BUYERS, async (i) => {
      const token = buyers[i]?.token ?? '';
      const run = await untilAnswered(
        async () => {
          const answer = await client.purchase(token, product.id, 1, { 'idempotency-key': `kill-${strategy}-${i}` });
          if (answer.status === 201 && ++sold === Math.ceil(STOCK / 3)) kill();
          return answer;
        },
        { resets: true, walksAway: i % 5 === 0 },
      );
      if (run.final?.status === 201 && i % 3 === 0) payments.push(await pay(token, orderIdOf(run.final), `pay-${strategy}-${i}`));
      return run;
    });
    const restartMs = await outage;

    // The kill came mid-storm: some buyers' connections were reset or refused.
    const resets = runs.reduce((sum, run) => sum + run.resets, 0);
    expect(resets).toBeGreaterThan(0);
    const paymentRuns = payments.flatMap((payment) => payment.runs);
    expectAnsweredWell(runs, NO_HANG_MS);
    expectAnsweredWell(paymentRuns, NO_HANG_MS, PAY_COME_BACK);
    const finals = runs.filter((run) => !run.walkedAway).map((run) => (run.final ? codeOf(run.final) : 'none'));
    // A hold the dead process made and no retry reached in time lapses: that request is over.
    expect(finals.filter((code) => !['201', '409 SOLD_OUT', '410 HOLD_EXPIRED'].includes(code))).toEqual([]);
    const settled = ['200', '410 HOLD_EXPIRED', 'order paid', 'order expired'];
    expect(payments.map((payment) => payment.outcome).filter((outcome) => !settled.includes(outcome))).toEqual([]);
    const won = runs.flatMap((run) => (run.final?.status === 201 ? [orderIdOf(run.final)] : []));

    // Every 201 reaches PostgreSQL (on redis-lua, through the restarted API's consumer).
    await waitFor('every 201 in PostgreSQL', async () => (await ordersFound(t.api, won)) === won.length, 30_000, 100);
    await waitFor('the queue drained', async () => (await drill.pipeline.broker.depth()).placed === 0, 30_000);
    // Holds the gate granted to requests no one finished: voided in PostgreSQL, then returned.
    if (strategy === 'redis-lua') await reconcileSettled(t);
    // Every unit held for a request no one finished (an allocation with no order) comes back:
    // expired by the sweeper, or voided by the reconciler.
    const { inventory, orders } = t.server.system.stores.databases;
    const orphans = async (): Promise<{ id: string; status: string; quantity: number }[]> => {
      const allocations = await inventory<{ id: string; status: string; quantity: number }[]>`
        select id, status, quantity from allocations where product_id = ${product.id}`;
      const recorded = new Set((await orders<{ id: string }[]>`select id from orders where product_id = ${product.id}`).map((row) => row.id));
      return allocations.filter((allocation) => !recorded.has(allocation.id));
    };
    await waitFor('stranded units back in stock', async () => (await orphans()).every((a) => a.status !== 'held'), (HOLD_SECONDS + 10) * 1000, 200);
    const stranded = await orphans();
    // And every order's hold lapses or is paid, so the ledger is final.
    await waitFor('every hold paid or lapsed', async () => {
      const [row] = await orders<{ n: number }[]>`select count(*)::int as n from orders where product_id = ${product.id} and status = 'held'`;
      return row?.n === 0;
    }, (HOLD_SECONDS + 10) * 1000, 200);

    const depth = await drill.pipeline.broker.depth();
    expect(depth.dead).toBe(0);
    // Every order is a 201's, or that of a buyer who left after a reset (recorded, never answered).
    const recordedRows = await orders<{ id: string; buyer_id: string }[]>`select id, buyer_id from orders where product_id = ${product.id}`;
    const left = new Set(buyers.filter((_, i) => runs[i]?.walkedAway === true).map((buyer) => buyer.id));
    const answered = new Set(won);
    expect(recordedRows.filter((row) => !answered.has(row.id) && !left.has(row.buyer_id))).toEqual([]);
    const recorded = recordedRows.length;
    const twice = await orders<{ buyer_id: string }[]>`
      select buyer_id from orders where product_id = ${product.id} group by buyer_id having count(*) > 1`;
    expect(twice).toEqual([]);
    await expectInvariant(t.api, product.id, runs.flatMap((run) => (run.final ? [run.final] : [])));
    const audit = await t.api.audit(product.id);
    expect(audit.products[0]).toMatchObject({ stocked: STOCK, oversold: 0 });
    const money = await expectChargedOnce(t.server.system.stores.databases, buyers.map((buyer) => buyer.id), BALANCE);

    await reportDrill({
      drill: 'api-kill',
      strategy,
      buyers: BUYERS,
      stock: STOCK,
      answered2xx: won.length,
      ordersFound: await ordersFound(t.api, won),
      oversold: audit.products[0]?.oversold ?? 0,
      stranded: stranded.reduce((sum, a) => sum + a.quantity, 0),
      returned: stranded.filter((a) => a.status !== 'held').reduce((sum, a) => sum + a.quantity, 0),
      deadLettered: depth.dead,
      codes: answersByCode(runs),
      longestWaitMs: Math.max(...[...runs, ...paymentRuns].map((run) => run.slowestMs)),
      resets,
      walkedAway: runs.filter((run) => run.walkedAway).length,
      // Recorded before the kill, answered to no one: the buyer left after the reset.
      ordersOfBuyersWhoLeft: recorded - won.length,
      restartMs: Math.round(restartMs),
      payers: payments.length,
      paymentCodes: answersByCode(paymentRuns),
      paymentKeysStuck: payments.filter((payment) => payment.keyStuck).length,
      paid: money.paid,
      refunded: money.refunded,
    });
  });
});
