/**
 * Reserve lanes: how many reservations of one product go to the store at once. Unit tests of the
 * line itself, then a herd on the real server: buyers beyond the stock wait for the store's answer
 * about the stock instead of each asking it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReserveLanes } from '../src/inventory/reserve-lanes.js';
import type { StockStrategy } from '../src/inventory/stock-strategy.js';
import { startTestServer, type TestServer } from './support/server.js';
import { expectInvariant, storm, tally } from './support/storm.js';

/** Product ids in their one spelling (the lanes and hints refuse any other). */
const P = '01900000-0000-7000-8000-0000000000a1';
const Q = '01900000-0000-7000-8000-0000000000a2';

/** A unit of work that runs until it is let go, recording when it started. */
function gate(started: string[], name: string): { work: () => Promise<string>; finish: () => void } {
  let finish = (): void => undefined;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return {
    work: async () => {
      started.push(name);
      await done;
      return name;
    },
    finish: () => finish(),
  };
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('reserve lanes', () => {
  it('let everyone through while the units left are not known, or exceed the line', async () => {
    const lanes = new ReserveLanes(2);
    const started: string[] = [];
    const works = ['a', 'b', 'c', 'd'].map((name) => gate(started, name));
    const running = works.map((w) => lanes.run(P, w.work));
    await turn();
    expect(started).toEqual(['a', 'b', 'c', 'd']);
    lanes.noteRemaining(Q, 100);
    const more = ['e', 'f', 'g'].map((name) => gate(started, name));
    const runningQ = more.map((w) => lanes.run(Q, w.work));
    await turn();
    expect(started).toHaveLength(7);
    for (const w of [...works, ...more]) w.finish();
    expect(await Promise.all([...running, ...runningQ])).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
  });

  it('send at most max(width, units left) to the store, first come first served', async () => {
    const lanes = new ReserveLanes(2);
    lanes.noteRemaining(P, 1);
    const started: string[] = [];
    const works = ['a', 'b', 'c', 'd', 'e'].map((name) => gate(started, name));
    const running = works.map((w) => lanes.run(P, w.work));
    await turn();
    expect(started).toEqual(['a', 'b']);
    works[1]?.finish();
    await turn();
    expect(started).toEqual(['a', 'b', 'c']);
    // Units came back: the line widens as soon as a lane frees up.
    lanes.noteReturned(P, 3);
    works[0]?.finish();
    await turn();
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e']);
    for (const w of works) w.finish();
    await Promise.all(running);
  });

  it('narrow when the store says fewer units are left, and free a lane when work fails', async () => {
    const lanes = new ReserveLanes(1);
    lanes.noteRemaining(P, 3);
    const started: string[] = [];
    const works = ['a', 'b', 'c', 'd', 'e'].map((name) => gate(started, name));
    const running = works.map((w) => lanes.run(P, w.work));
    await turn();
    expect(started).toEqual(['a', 'b', 'c']);
    lanes.noteRemaining(P, 0);
    works[0]?.finish();
    works[1]?.finish();
    await turn();
    // Two left, one still in flight: the width is 1, so nobody else goes yet.
    expect(started).toEqual(['a', 'b', 'c']);
    works[2]?.finish();
    await turn();
    expect(started).toEqual(['a', 'b', 'c', 'd']);
    works[3]?.finish();
    await turn();
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e']);
    // Work that fails gives its lane back too.
    const failing = lanes.run(P, () => Promise.reject(new Error('store down')));
    const last = gate(started, 'f');
    const lastRunning = lanes.run(P, last.work);
    works[4]?.finish();
    await expect(failing).rejects.toThrow('store down');
    await turn();
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    last.finish();
    await Promise.all([...running, lastRunning]);
  });

  it('do nothing at width 0', async () => {
    const lanes = new ReserveLanes(0);
    lanes.noteRemaining(P, 0);
    const started: string[] = [];
    const works = ['a', 'b', 'c'].map((name) => gate(started, name));
    const running = works.map((w) => lanes.run(P, w.work));
    await turn();
    expect(started).toEqual(['a', 'b', 'c']);
    for (const w of works) w.finish();
    await Promise.all(running);
  });
});

describe('a herd behind the lanes', () => {
  let t: TestServer;
  beforeAll(async () => {
    // No sold-out hints: every buyer goes through the lanes to the store, so only the lanes
    // keep them from all being there at once.
    t = await startTestServer({ soldOutHintMs: 0 });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('never has more reservations of 1 unit with the store at once than there are lanes, and stores every refusal', async () => {
    // Watches the reservations that reach the real atomic strategy (it still does all the work).
    const atomic = t.server.system.strategies.get('atomic') as StockStrategy;
    const reserve = atomic.reserve.bind(atomic);
    let asked = 0;
    let inFlight = 0;
    let mostAtOnce = 0;
    atomic.reserve = async (request) => {
      asked += 1;
      inFlight += 1;
      mostAtOnce = Math.max(mostAtOnce, inFlight);
      try {
        return await reserve(request);
      } finally {
        inFlight -= 1;
      }
    };
    try {
      const product = await t.api.createProduct({ stock: 1 });
      const buyers = await t.api.createBuyers(300);
      const key = (i: number): Record<string, string> => ({ 'idempotency-key': `herd-${i}` });
      const answers = await storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id, 1, key(i)));

      expect(tally(answers)).toEqual({ '201': 1, '409 SOLD_OUT': 299 });
      await expectInvariant(t.api, product.id, answers);
      expect(asked).toBe(300);
      // By default a process has as many lanes as connections in its inventory pool.
      expect(t.config.reserveLanes).toBe(t.config.dbPoolSize);
      expect(mostAtOnce).toBeLessThanOrEqual(t.config.reserveLanes);
      // Every answer was stored under its key, refusals included (in batches): each replays.
      const replays = await storm(buyers.length, (i) => t.api.purchase(buyers[i]?.token ?? '', product.id, 1, key(i)));
      expect(replays.map((answer) => [answer.status, answer.headers['idempotent-replayed']])).toEqual(
        answers.map((answer) => [answer.status, 'true']),
      );
    } finally {
      atomic.reserve = reserve;
    }
  });
});
