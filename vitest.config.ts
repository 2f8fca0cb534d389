import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup-env.ts'],
    testTimeout: 20_000,
    hookTimeout: 120_000,
    // Two cores: more workers only queue behind the database and stripe-mock.
    maxWorkers: 2,
    // Function logs of passing tests are noise; a failing test shows its own.
    silent: 'passed-only',
    // The JSON report lets CI print a plain "N passed, N failed" line.
    reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
  },
});
