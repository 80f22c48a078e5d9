/**
 * The suite's budget of connections to the shared PostgreSQL (`TEST_DATABASE_URL`), so that it
 * passes on a server with the default `max_connections` of 100 while another program (a `serve`
 * with default pools: 25 connections) is connected to it too.
 *
 * At most {@link FILES_AT_ONCE} test files run at once (vitest.config.ts), and each may hold
 * {@link FILE_CONNECTIONS}: {@link SUITE_CONNECTIONS} in all, 40 left over. Of a file's share,
 * its test servers and `flashsale` processes may keep {@link FILE_POOL_CONNECTIONS} in their
 * pools; the rest is for the file's own connections (an admin connection, a probe, the short-lived
 * ones that create and drop its databases). Every test server and process claims its pools here
 * before it opens them, and a claim past the share throws, so a test that would take more fails
 * every time, not only when another program happens to be connected.
 *
 * @remarks Test servers get {@link TEST_POOL_SIZE} (2 + 4 + 4 = 10 connections) unless a test
 * asks otherwise. Servers on another PostgreSQL (a drill's private one) are not counted.
 */
import { modulePoolSizes } from '../../src/infra/database.js';

/** Connections the whole suite may hold on the shared PostgreSQL at once. */
export const SUITE_CONNECTIONS = 60;
/** Test files run at once (vitest's `maxWorkers`). */
export const FILES_AT_ONCE = 2;
/** One file's share. */
export const FILE_CONNECTIONS = SUITE_CONNECTIONS / FILES_AT_ONCE;
/** Of a file's share, what its servers' and processes' pools may keep; 4 are the file's own. */
export const FILE_POOL_CONNECTIONS = FILE_CONNECTIONS - 4;
/** `DB_POOL_SIZE` of a test server or process unless a test asks otherwise. */
export const TEST_POOL_SIZE = 4;

let claimed = 0;

/** The connections a server with `DB_POOL_SIZE = poolSize` keeps open (see `modulePoolSizes`). */
export function poolConnections(poolSize: number, modules: 'all' | readonly ('users' | 'inventory' | 'orders')[] = 'all'): number {
  const sizes = modulePoolSizes(poolSize);
  const counted = modules === 'all' ? (['users', 'inventory', 'orders'] as const) : modules;
  return counted.reduce((sum, module) => sum + sizes[module], 0);
}

/**
 * Claims `count` connections of this file's share for `what`; returns the release. Throws when
 * the file's servers and processes would hold more than {@link FILE_POOL_CONNECTIONS}.
 */
export function claimConnections(count: number, what: string): () => void {
  if (claimed + count > FILE_POOL_CONNECTIONS) {
    throw new Error(
      `${what} would keep ${count} PostgreSQL connections beside the ${claimed} this test file's servers already keep: ` +
        `over the ${FILE_POOL_CONNECTIONS} a file may (test/support/pg-budget.ts); give it a smaller dbPoolSize`,
    );
  }
  claimed += count;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    claimed -= count;
  };
}

/** True when `url` names the shared PostgreSQL the budget is for (`sharedUrl`, the suite's). */
export function onSharedServer(url: string | undefined, sharedUrl: string): boolean {
  if (url === undefined) return false;
  return new URL(url).host === new URL(sharedUrl).host;
}
