/**
 * The PostgreSQL driver survives losing a connection at any moment. postgres.js 3.4.9 throws from
 * a `setImmediate` (no caller can catch it, the process dies) when a write is scheduled on a
 * connection whose socket has closed; `patches/postgres+3.4.9.patch` settles the query instead.
 * A pinned connection (a transaction's, a reserved one) hits it every time; and a query written to
 * a socket that then closed with an error was never settled (it hung), which the patch settles too.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '../src/infra/database.js';
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
