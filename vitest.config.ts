import { defineConfig } from 'vitest/config';

// Integration tests against real stores: generous timeouts, and at most two files at once
// because the machine has two cores and the storm tests saturate both.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    globalSetup: ['test/global-setup.ts'],
  },
});
