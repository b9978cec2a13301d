import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // uWebSockets.js and better-sqlite3 are native addons: one process per test file is the safe isolation.
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 30_000,
  },
});
