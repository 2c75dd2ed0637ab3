import { defineConfig } from 'vitest/config';

/**
 * One vitest configuration for every package: workspace packages resolve to their `src/` through
 * the `@goe/source` export condition, so tests never need a build.
 */
export function goeVitestConfig(name: string, testTimeoutMs = 120_000) {
  return defineConfig({
    resolve: { conditions: ['@goe/source'] },
    ssr: { resolve: { conditions: ['@goe/source'] } },
    test: {
      name,
      environment: 'node',
      include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
      testTimeout: testTimeoutMs,
      hookTimeout: testTimeoutMs,
      pool: 'forks',
      // 2-core CI: one file at a time per package keeps memory and timing predictable.
      fileParallelism: false,
      reporters: ['default'],
    },
  });
}
