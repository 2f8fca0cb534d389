// Starts the real local stack once for the whole run: PostgreSQL with our migrations,
// PostgREST behind a Supabase-style /rest/v1 gateway, and stripe-mock behind the
// version bridge. Ports are picked free, so a running `npm run dev` is not disturbed.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { pushCatalog } from '../scripts/lib/local-catalog.ts';
import { LOCAL_JWT_SECRET, LOCAL_STRIPE_ENV } from '../scripts/lib/local-defaults.ts';
import { startLocalStack } from '../scripts/stack/index.ts';
import { startStripeMockBridge } from '../scripts/stack/stripe-mock-bridge.ts';

export type TestEnv = Record<string, string>;

declare module 'vitest' {
  export interface ProvidedContext {
    testEnv: TestEnv;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'billing-test-db-'));
  const started = performance.now();
  const stack = await startLocalStack({
    dataDir,
    ports: { postgres: 0, gateway: 0, postgrest: 0, stripeMock: 0 },
    jwtSecret: LOCAL_JWT_SECRET,
    migrationsDir: path.resolve(import.meta.dirname, '../supabase/migrations'),
  });
  const bridge = await startStripeMockBridge(stack.env.STRIPE_API_BASE);
  const testEnv: TestEnv = {
    ...stack.env,
    STRIPE_MOCK_URL: stack.env.STRIPE_API_BASE,
    STRIPE_API_BASE: bridge.url,
    ...LOCAL_STRIPE_ENV,
    URL: 'https://analytics.example.com',
  };
  // The shipped catalog, once, before the files that sell it run side by side (see
  // test/support/catalog.ts).
  await pushCatalog(testEnv);
  console.log(`local stack up in ${Math.round(performance.now() - started)} ms`);

  project.provide('testEnv', testEnv);

  return async () => {
    await bridge.close();
    await stack.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
}
