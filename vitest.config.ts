import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: [
      'test/**/*.test.ts',
      'policy/**/*.test.ts',
      'runtime-shims/**/*.test.ts',
      'extensions/**/*.test.ts',
      'control/**/*.test.ts',
      'cli/**/*.test.ts',
      'layers/**/*.test.ts',
    ],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Integration tests start real servers and processes; two cores do not like more.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
