/**
 * The users client over a real HTTP hop (`ServiceClient` → the internal routes → `UsersService` on
 * its real database): what the in-process client answers, it answers, refusals included, and
 * every failure of the hop is named by the one taxonomy: a refused connection or a callee that
 * refuses before it starts is `STORE_UNAVAILABLE` (nothing done), a read that times out or is cut
 * is `STORE_UNAVAILABLE`, a write that times out or is cut after it was sent is `OUTCOME_UNKNOWN`
 * with its order id (and its keyed retry takes nothing twice), and a code from a newer service is
 * `OUTCOME_UNKNOWN`. Never a 500, never a hang.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import Fastify, { type FastifyInstance } from 'fastify';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DomainError } from '../src/infra/errors.js';
import { ServiceClient } from '../src/infra/service-client.js';
import { DEADLINE_HEADER } from '../src/infra/service-methods.js';
import { serveModule } from '../src/infra/service-routes.js';
import type { UsersClient } from '../src/users/users.client.js';
import { USERS_METHODS } from '../src/users/users.methods.js';
import { startTestServer, type TestServer } from './support/server.js';

const TOKEN = randomBytes(32).toString('hex');
const TIMEOUT_MS = 400;

let t: TestServer;
let internal: FastifyInstance;
let url: string;
let hop: ServiceClient;
let users: UsersClient;

/** What the test makes the callee do: stall before the method, cut the socket or rename the code after it. */
const callee = { stallMs: 0, cut: false, newerCode: false };

beforeAll(async () => {
  t = await startTestServer();
  const real = t.server.system.users;
  // The real service, behind a stall the test can switch on (a callee that answers late).
  const stalling = new Proxy(real, {
    get(target, property, receiver) {
      const member = Reflect.get(target, property, receiver) as unknown;
      if (typeof member !== 'function') return member;
      return async (...args: unknown[]) => {
        if (callee.stallMs > 0) await sleep(callee.stallMs);
        return (member as (...a: unknown[]) => Promise<unknown>).apply(target, args);
      };
    },
  });
  internal = Fastify();
  internal.addHook('onSend', async (req, _reply, payload) => {
    // Killed mid-call: the method ran, the answer never leaves.
    if (callee.cut) req.raw.socket.destroy();
    if (callee.newerCode) return JSON.stringify({ ok: false, error: { code: 'A_CODE_FROM_A_NEWER_SERVICE', detail: 'new', extras: {} } });
    return payload;
  });
  serveModule(internal, { service: 'users', implementation: stalling, methods: USERS_METHODS }, TOKEN);
  url = await internal.listen({ host: '127.0.0.1', port: 0 });
  hop = new ServiceClient('users', { url, token: TOKEN, timeoutMs: TIMEOUT_MS });
  users = hop.client(USERS_METHODS);
});
afterAll(async () => {
  await hop?.close();
  await internal?.close();
  await t?.stop();
});

function reset(): void {
  callee.stallMs = 0;
  callee.cut = false;
  callee.newerCode = false;
}

async function buyer(balanceCents = 10_000): Promise<string> {
  const [created] = await t.api.createBuyers(1, balanceCents);
  if (!created) throw new Error('no buyer');
  return created.id;
}

/** What the call threw, as code and extras (or `undefined` if it did not throw). */
async function thrown(call: Promise<unknown>): Promise<{ code: string; extras: Record<string, unknown> } | undefined> {
  try {
    await call;
    return undefined;
  } catch (error) {
    if (!(error instanceof DomainError)) throw error;
    return { code: error.code, extras: { ...error.extras } };
  }
}

const balanceOf = async (userId: string): Promise<number> => (await t.server.system.users.getUser(userId)).balanceCents;

describe('the users client over HTTP', () => {
  it('answers as the in-process client does, refusals as values', async () => {
    reset();
    const userId = await buyer();
    expect(await users.getUser(userId)).toEqual(await t.server.system.users.getUser(userId));
    const orderId = randomUUID();
    expect(await users.debit({ userId, orderId, amountCents: 2_500 })).toEqual({ ok: true, balanceCents: 7_500 });
    expect(await users.debit({ userId, orderId: randomUUID(), amountCents: 1_000_000 })).toEqual({
      ok: false,
      reason: 'INSUFFICIENT_FUNDS',
      balanceCents: 7_500,
    });
    expect(await users.ledgerOf([orderId])).toEqual([{ orderId, debitedCents: 2_500, refundedCents: 0, voided: false }]);
    expect(await users.refund({ userId, orderId })).toBe(2_500);
    expect(await thrown(users.getUser(randomUUID()))).toMatchObject({ code: 'USER_NOT_FOUND' });
  });

  it('refuses to send what JSON would not carry faithfully', async () => {
    reset();
    await expect(users.getUser(new Date() as unknown as string)).rejects.toThrow(/JSON cannot carry/);
  });

  it('names a read that timed out STORE_UNAVAILABLE, and a write OUTCOME_UNKNOWN with its order id that its retry finishes once', async () => {
    reset();
    const userId = await buyer();
    callee.stallMs = TIMEOUT_MS * 3;
    expect(await thrown(users.getUser(userId))).toMatchObject({ code: 'STORE_UNAVAILABLE', extras: { store: 'users' } });
    const orderId = randomUUID();
    expect(await thrown(users.debit({ userId, orderId, amountCents: 1_000 }))).toMatchObject({
      code: 'OUTCOME_UNKNOWN',
      extras: { store: 'users', orderId },
    });
    // The callee answers after the caller gave up: the debit happened, once.
    await sleep(TIMEOUT_MS * 3);
    reset();
    expect(await balanceOf(userId)).toBe(9_000);
    expect(await users.debit({ userId, orderId, amountCents: 1_000 })).toEqual({ ok: true, balanceCents: 9_000 });
    expect(await balanceOf(userId)).toBe(9_000);
  });

  it('names a write whose callee was cut after it ran OUTCOME_UNKNOWN, and a read STORE_UNAVAILABLE', async () => {
    reset();
    const userId = await buyer();
    callee.cut = true;
    const orderId = randomUUID();
    expect(await thrown(users.debit({ userId, orderId, amountCents: 1_000 }))).toMatchObject({ code: 'OUTCOME_UNKNOWN', extras: { orderId } });
    expect(await thrown(users.getUser(userId))).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    reset();
    expect(await balanceOf(userId)).toBe(9_000);
    expect(await users.refund({ userId, orderId })).toBe(1_000);
    expect(await balanceOf(userId)).toBe(10_000);
  });

  it('names a code from a newer service OUTCOME_UNKNOWN, not a crash', async () => {
    reset();
    const userId = await buyer();
    callee.newerCode = true;
    expect(await thrown(users.getUser(userId))).toMatchObject({ code: 'OUTCOME_UNKNOWN' });
    reset();
  });

  it('names a refused connection STORE_UNAVAILABLE, for a write too: nothing was sent', async () => {
    reset();
    const closed = Fastify();
    const nowhere = await closed.listen({ host: '127.0.0.1', port: 0 });
    await closed.close();
    const lost = new ServiceClient('users', { url: nowhere, token: TOKEN, timeoutMs: TIMEOUT_MS });
    try {
      const remote = lost.client(USERS_METHODS);
      expect(await thrown(remote.getUser(randomUUID()))).toMatchObject({ code: 'STORE_UNAVAILABLE' });
      expect(await thrown(remote.debit({ userId: randomUUID(), orderId: randomUUID(), amountCents: 1 }))).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      await lost.close();
    }
  });
});

describe('the internal routes', () => {
  const call = (method: string, args: unknown[], headers: Record<string, string>) =>
    request(`${url}/internal/users/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ args }),
    });

  it('refuse a buyer token, or none, with 401, and do nothing', async () => {
    reset();
    const [me] = await t.api.createBuyers(1, 0);
    if (!me) throw new Error('no buyer');
    const refused: Record<string, string>[] = [{}, { authorization: `Bearer ${me.token}` }, { authorization: `Bearer ${TOKEN}x` }];
    for (const headers of refused) {
      const answer = await call('credit', [me.id, 5_000], headers);
      expect(answer.statusCode).toBe(401);
      await answer.body.text();
    }
    expect(await balanceOf(me.id)).toBe(0);
    // A client holding another token is told the service is unavailable, never a 500.
    const stranger = new ServiceClient('users', { url, token: randomBytes(32).toString('hex'), timeoutMs: TIMEOUT_MS });
    try {
      expect(await thrown(stranger.client(USERS_METHODS).credit(me.id, 5_000))).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    } finally {
      await stranger.close();
    }
    expect(await balanceOf(me.id)).toBe(0);
  });

  it('do not start a call whose deadline has passed (504), and serve no method outside the table (404)', async () => {
    reset();
    const userId = await buyer(0);
    const late = await call('credit', [userId, 5_000], { authorization: `Bearer ${TOKEN}`, [DEADLINE_HEADER]: String(Date.now() - 1) });
    expect(late.statusCode).toBe(504);
    expect(await late.body.json()).toMatchObject({ ok: false, error: { code: 'STORE_UNAVAILABLE' } });
    expect(await balanceOf(userId)).toBe(0);
    const unknown = await call('constructor', [], { authorization: `Bearer ${TOKEN}` });
    expect(unknown.statusCode).toBe(404);
    await unknown.body.text();
  });

  it('refuse a service token shorter than 32 characters', () => {
    expect(() => new ServiceClient('users', { url, token: 'short', timeoutMs: TIMEOUT_MS })).toThrow(/at least 32/);
    expect(() => serveModule(Fastify(), { service: 'users', implementation: t.server.system.users, methods: USERS_METHODS }, 'short')).toThrow(/at least 32/);
  });
});
