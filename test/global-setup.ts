// Starts the real local stack once for the whole run: PostgreSQL with our migrations,
// PostgREST behind a Supabase-style /rest/v1 gateway, and stripe-mock behind the
// version bridge. Ports are picked free, so a running `npm run dev` is not disturbed.

import type { TestProject } from 'vitest/node';
import { pushCatalog } from '../scripts/lib/local-catalog.ts';
import { startThrowawayStack } from '../scripts/stack/throwaway.ts';

export type TestEnv = Record<string, string>;

declare module 'vitest' {
  export interface ProvidedContext {
    testEnv: TestEnv;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = performance.now();
  const { env, stop } = await startThrowawayStack('test');
  // The shipped catalog, once, before the files that sell it run side by side (see
  // test/support/catalog.ts).
  await pushCatalog(env).catch(async (error: unknown) => {
    await stop();
    throw error;
  });
  console.log(`local stack up in ${Math.round(performance.now() - started)} ms`);

  project.provide('testEnv', env);
  return stop;
}
