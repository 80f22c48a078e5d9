import { defineConfig } from 'vitest/config';
import { FILES_AT_ONCE } from './test/support/pg-budget.js';

// Integration tests against real stores: generous timeouts, and at most two files at once
// because the machine has two cores and the storm tests saturate both, and because the suite's
// budget of PostgreSQL connections is a share per file (test/support/pg-budget.ts).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: FILES_AT_ONCE,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    globalSetup: ['test/global-setup.ts'],
  },
});
