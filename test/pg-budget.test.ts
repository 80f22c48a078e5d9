/**
 * The suite's budget of PostgreSQL connections holds: a test server that would keep its file's
 * servers over the file's share is refused before it opens a connection.
 */
import { describe, expect, it } from 'vitest';
import { claimConnections, FILE_POOL_CONNECTIONS, poolConnections, TEST_POOL_SIZE } from './support/pg-budget.js';
import { startTestServer } from './support/server.js';

describe("a test file's share of PostgreSQL connections", () => {
  it('gives a test server small pools, and refuses one that would go over the share', async () => {
    const t = await startTestServer();
    try {
      expect(t.config.dbPoolSize).toBe(TEST_POOL_SIZE);
      const { databases } = t.server.system.stores;
      expect(databases.users.options.max + databases.inventory.options.max + databases.orders.options.max).toBe(poolConnections(TEST_POOL_SIZE));
      const left = FILE_POOL_CONNECTIONS - poolConnections(TEST_POOL_SIZE);
      await expect(startTestServer({ dbPoolSize: left })).rejects.toThrow(/over the 26 a file may/);
      // What is left can be claimed, and given back.
      claimConnections(left, 'the rest of the share')();
    } finally {
      await t.stop();
    }
  });
});
