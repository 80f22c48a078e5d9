/**
 * Runs one scenario against one target: the storm (every buyer on its own connection, released
 * at once by a barrier), the checkout (pay after a think time, abandon, losers retry as holds
 * expire) and the hot run (a fixed set of connections cycling through buyers for T seconds).
 * It only fires and records; setting up, auditing and reporting happen around it.
 */
import { randomUUID } from 'node:crypto';
import { Clock, Connection, KeptAliveConnection, type Answer, type Buyer, type SendOptions } from './client.js';
import type { Scenario } from './scenarios.js';
import { isShed, type RequestKind, type RequestRecord } from './stats.js';

/** Live counts for the progress line. */
export interface Progress {
  sent: number;
  answered: number;
  ok: number;
  refused: number;
  shed: number;
  errors: number;
}

export function newProgress(): Progress {
  return { sent: 0, answered: 0, ok: 0, refused: 0, shed: 0, errors: 0 };
}

export interface FireOptions {
  readonly target: URL;
  readonly scenario: Scenario;
  readonly productId: string;
  readonly buyers: readonly Buyer[];
  readonly progress: Progress;
}

/** A buyer's purchase of one unit, as every scenario sends it (the floor answers any request). */
function purchaseOf(productId: string, buyer: Buyer, key: string): SendOptions {
  return { method: 'POST', path: '/v1/purchases', token: buyer.token, body: { productId, quantity: 1 }, headers: { 'idempotency-key': key } };
}

export interface FireResult {
  readonly records: readonly RequestRecord[];
  /** Set when the checkout found no pay route (`POST /v1/orders/:id/pay` → 404 NOT_FOUND). */
  readonly payUnavailable: boolean;
  readonly durationSeconds: number;
}

/** A shed buyer comes back at most this many times before giving up (as a real client would). */
const MAX_SHED_RETRIES = 30;

/** A checkout loser's n-th new try is numbered from `n * RETRY_ROUND`, so resales can be told apart. */
export const RETRY_ROUND = MAX_SHED_RETRIES + 1;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

class Recorder {
  readonly records: RequestRecord[] = [];
  constructor(private readonly progress: Progress) {}

  add(buyer: number, kind: RequestKind, attempt: number, answer: Answer): RequestRecord {
    const orderId = orderIdOf(answer.body);
    const record: RequestRecord = {
      buyer,
      kind,
      attempt,
      startedAt: answer.startedAt,
      writtenAt: answer.writtenAt,
      latencyMs: answer.endedAt - answer.startedAt,
      status: answer.status,
      code: answer.code,
      error: answer.error,
      orderId: answer.status >= 200 && answer.status < 300 ? orderId : undefined,
    };
    this.records.push(record);
    const progress = this.progress;
    progress.answered += 1;
    if (answer.status === 0) progress.errors += 1;
    else if (isShed(record)) progress.shed += 1;
    else if (answer.status < 300) progress.ok += 1;
    else progress.refused += 1;
    return record;
  }
}

function orderIdOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const order = (body as { order?: { id?: unknown } }).order;
  return typeof order?.id === 'string' ? order.id : undefined;
}

function retryDelayMs(answer: Answer): number {
  return (answer.retryAfterSeconds ?? 1) * 1000 + Math.random() * 250;
}

/** Fires the scenario and resolves when every buyer has its answer (or the run's time is up). */
export async function fire(options: FireOptions): Promise<FireResult> {
  switch (options.scenario.kind) {
    case 'storm':
      return fireStorm(options, false);
    case 'checkout':
      return fireStorm(options, true);
    case 'hot':
      return fireHot(options);
  }
}

async function fireStorm(options: FireOptions, checkout: boolean): Promise<FireResult> {
  const { scenario, buyers, productId, progress } = options;
  const clock = new Clock();
  const recorder = new Recorder(progress);
  const runId = randomUUID();
  let payUnavailable = false;
  const deadlineMs = scenario.durationSeconds * 1000;

  /** One purchase, coming back after shed answers; resolves with the definitive answer. */
  const purchase = async (connection: Connection, index: number, buyer: Buyer, key: string, firstAttempt: number): Promise<RequestRecord> => {
    let attempt = firstAttempt;
    for (;;) {
      progress.sent += 1;
      const answer = await connection.send(purchaseOf(productId, buyer, key));
      const record = recorder.add(index, 'purchase', attempt, answer);
      if (!isShed(record) || attempt - firstAttempt >= MAX_SHED_RETRIES) return record;
      await sleep(retryDelayMs(answer));
      attempt += 1;
    }
  };

  const pay = async (connection: Connection, index: number, buyer: Buyer, orderId: string): Promise<void> => {
    const [min, max] = scenario.thinkMs;
    await sleep(min + Math.random() * (max - min));
    for (let attempt = 0; attempt <= MAX_SHED_RETRIES; attempt += 1) {
      progress.sent += 1;
      const answer = await connection.send({
        method: 'POST',
        path: `/v1/orders/${orderId}/pay`,
        token: buyer.token,
        body: {},
        headers: { 'idempotency-key': `pay-${orderId}` },
      });
      const record = recorder.add(index, 'pay', attempt, answer);
      if (answer.status === 404 && answer.code === 'NOT_FOUND') payUnavailable = true;
      if (!isShed(record)) return;
      await sleep(retryDelayMs(answer));
    }
  };

  const buyerFlow = async (index: number, buyer: Buyer): Promise<void> => {
    const connection = new Connection(options.target, clock);
    try {
      let record = await purchase(connection, index, buyer, `bench-${runId}-${index}`, 0);
      if (!checkout) return;
      if (record.orderId !== undefined) {
        if (abandons(index, scenario.abandonRate)) return;
        await pay(connection, index, buyer, record.orderId);
        return;
      }
      // A loser who was told SOLD_OUT keeps trying until the window closes: abandoned holds expire.
      let tries = 1;
      while (record.status === 409 && record.code === 'SOLD_OUT' && clock.now() < deadlineMs) {
        await sleep(1000 + Math.random() * 500);
        if (clock.now() >= deadlineMs) break;
        record = await purchase(connection, index, buyer, `bench-${runId}-${index}-${tries}`, tries * RETRY_ROUND);
        tries += 1;
        if (record.orderId !== undefined) await pay(connection, index, buyer, record.orderId);
      }
    } finally {
      connection.close();
    }
  };

  // The barrier: every flow waits on one promise, so they all start in the same turn.
  let release: () => void = () => undefined;
  const barrier = new Promise<void>((resolve) => {
    release = resolve;
  });
  const flows = buyers.map(async (buyer, index) => {
    await barrier;
    await buyerFlow(index, buyer);
  });
  clock.reset();
  release();
  await Promise.all(flows);
  return { records: recorder.records, payUnavailable, durationSeconds: clock.now() / 1000 };
}

/** Deterministic per buyer, so a run is repeatable: about `rate` of the winners never pay. */
export function abandons(index: number, rate: number): boolean {
  return ((index * 2_654_435_761) % 1000) / 1000 < rate;
}

async function fireHot(options: FireOptions): Promise<FireResult> {
  const { scenario, buyers, productId, progress } = options;
  const clock = new Clock();
  const recorder = new Recorder(progress);
  const runId = randomUUID();
  const endMs = scenario.durationSeconds * 1000;
  let next = 0;
  let sequence = 0;

  const loop = async (): Promise<void> => {
    const connection = new KeptAliveConnection(options.target, clock);
    try {
      while (clock.now() < endMs) {
        const index = next % buyers.length;
        next += 1;
        const buyer = buyers[index];
        if (!buyer) break;
        sequence += 1;
        const request = purchaseOf(productId, buyer, `hot-${runId}-${sequence}`);
        // A shed buyer comes back after `Retry-After` with the same key (a shed answer is not
        // stored under it), as a real client would, until answered or the run is over.
        for (let attempt = 0; ; attempt += 1) {
          progress.sent += 1;
          const answer = await connection.send(request);
          const record = recorder.add(index, 'purchase', attempt, answer);
          if (answer.status === 0) await sleep(100);
          if (!isShed(record)) break;
          await sleep(retryDelayMs(answer));
          if (clock.now() >= endMs) break;
        }
      }
    } finally {
      connection.close();
    }
  };

  clock.reset();
  await Promise.all(Array.from({ length: Math.max(1, scenario.connections) }, () => loop()));
  return { records: recorder.records, payUnavailable: false, durationSeconds: clock.now() / 1000 };
}
