/**
 * The PostgreSQL driver survives losing a connection at any moment. postgres.js 3.4.9 throws from
 * a `setImmediate` (no caller can catch it, the process dies) when a write is scheduled on a
 * connection whose socket has closed; `patches/postgres+3.4.9.patch` settles the query instead.
 * A pinned connection (a transaction's, a reserved one) hits it every time; and a query written to
 * a socket that then closed with an error was never settled (it hung), which the patch settles too.
 * A reservation that failed to connect (the server down) stayed in the pool's line and took the
 * next connection to open with it, for good; the patch takes it out of the line.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { connect, transaction } from '../src/infra/database.js';
import { startEmbeddedPostgres } from '../src/infra/embedded-postgres.js';
import { TEST_DATABASE_URL } from './support/server.js';

const sql = connect(TEST_DATABASE_URL, 2, 'flashsale:driver-test');
const admin = connect(TEST_DATABASE_URL, 1, 'flashsale:driver-test-admin');
afterAll(async () => {
  await sql.end({ timeout: 5 });
  await admin.end({ timeout: 5 });
});

describe('a connection whose backend is terminated', () => {
  it('fails the next query on it with a catchable error, and the pool serves the one after', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => {
      uncaught.push(error);
    };
    process.on('uncaughtException', onUncaught);
    try {
      const reserved = await sql.reserve();
      const [{ pid } = { pid: 0 }] = await reserved<{ pid: number }[]>`select pg_backend_pid() as pid`;
      await admin`select pg_terminate_backend(${pid})`;
      // Small writes are sent on the next turn: the one that found the socket gone used to throw there.
      const failed = await reserved`select 1`.then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failed).toBeInstanceOf(Error);
      // The socket is gone now: this write finds it so, and must settle rather than throw or hang.
      const again = await reserved`select 1 as one`.catch((error: unknown) => error);
      expect(again).toBeInstanceOf(Error);
      reserved.release();
      // The dead connection goes back to the pool and fails the first query it is given (settled,
      // not hung); the pool then reconnects.
      const answers = [];
      for (let attempt = 0; attempt < 3; attempt += 1) {
        answers.push(await sql<{ one: number }[]>`select 1 as one`.then((rows) => rows[0]?.one, (error: unknown) => error));
      }
      expect(answers.at(-1)).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(uncaught).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  });
});

describe('a module connection', () => {
  it('plans every statement for the tables as they are now (no generic plan kept from when they were empty)', async () => {
    const [row] = await sql<{ plan_cache_mode: string }[]>`show plan_cache_mode`;
    expect(row?.plan_cache_mode).toBe('force_custom_plan');
  });
});

describe('a pool whose server restarts while transactions keep coming', () => {
  it('settles every transaction, and serves the ones after the restart (no connection lost to a failed reservation)', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'flashsale-driver-restart-'));
    let database = await startEmbeddedPostgres({ directory: join(directory, 'pg') });
    const pool = connect(database.url, 10, 'flashsale:driver-restart-test');
    try {
      await pool`create table counter (id int primary key, n int not null)`;
      await pool`insert into counter values (1, 0)`;
      const settled: Promise<'ok' | 'failed'>[] = [];
      let restarted: Promise<void> | undefined;
      // Transactions (reserved connections) arrive every 5 ms; the server stops after the 50th,
      // stays down for half a second (reservations made then fail to connect), and comes back.
      for (let i = 0; i < 300; i += 1) {
        settled.push(
          transaction(pool, async (tx) => {
            await tx`select n from counter where id = 1 for update`;
            await tx`update counter set n = n + 1 where id = 1`;
          }).then(
            () => 'ok' as const,
            () => 'failed' as const,
          ),
        );
        if (i === 50) {
          restarted = (async () => {
            await database.stop();
            await sleep(500);
            database = await startEmbeddedPostgres({ directory: join(directory, 'pg'), port: database.port });
          })();
        }
        await sleep(5);
      }
      await restarted;
      // Each one ends (the failed ones met the restart); before the fix, those queued while the
      // server was down waited forever, and so did every later one.
      const outcomes = await Promise.race([Promise.all(settled), sleep(30_000).then(() => 'hung' as const)]);
      expect(outcomes).not.toBe('hung');
      if (outcomes === 'hung') return;
      const ok = outcomes.filter((outcome) => outcome === 'ok').length;
      expect(ok).toBeGreaterThan(50);
      // Every success committed; a failure committed too only if the restart cut the answer to
      // its COMMIT (its outcome unknown to the client).
      const [row] = await pool<{ n: number }[]>`select n from counter where id = 1`;
      expect(row?.n).toBeGreaterThanOrEqual(ok);
      expect(row?.n).toBeLessThanOrEqual(outcomes.length);
    } finally {
      await pool.end({ timeout: 5 });
      await database.stop();
      await rm(directory, { recursive: true, force: true });
    }
  });
});
