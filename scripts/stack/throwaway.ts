// A throwaway local stack, as the tests and the benchmarks use it: free ports, a fresh
// database in a temporary folder, stripe-mock behind the recording bridge, and the
// variables the functions read. stop() removes the folder too. (`npm run dev` keeps its
// database and fixed ports, so it starts the parts itself.)

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCAL_JWT_SECRET, LOCAL_STRIPE_ENV } from '../lib/local-defaults.ts';
import { startLocalStack, type LocalStack } from './index.ts';
import type { LogFn } from './process.ts';
import { startStripeMockBridge, type StripeMockBridge } from './stripe-mock-bridge.ts';

const MIGRATIONS = fileURLToPath(new URL('../../supabase/migrations', import.meta.url));

export interface ThrowawayStack {
  stack: LocalStack;
  bridge: StripeMockBridge;
  /** The functions' variables: the stack's, Stripe through the bridge (stripe-mock itself
   *  as STRIPE_MOCK_URL), the local Stripe keys and ids, and a public site URL. */
  env: Record<string, string>;
  stop: () => Promise<void>;
}

export interface ThrowawayOptions {
  log?: LogFn;
  /** Start a PostgreSQL of its own even where DATABASE_URL names one: a test that changes
   *  database-wide state runs inside the test run, whose DATABASE_URL is the shared one. */
  ownDatabase?: boolean;
  /** The movable billing clock (dev-clock.sql); needs ownDatabase. */
  devClock?: boolean;
}

/** `name` names the temporary folder (billing-<name>-db-…). */
export async function startThrowawayStack(name: string, options: ThrowawayOptions = {}): Promise<ThrowawayStack> {
  if (options.devClock && !options.ownDatabase) throw new Error('devClock moves a database\'s time: start it with ownDatabase');
  // Its own folder: when run as root, postgres runs as another user and must reach it.
  const dataDir = await mkdtemp(path.join(tmpdir(), `billing-${name}-db-`));
  let stack: LocalStack | undefined;
  let bridge: StripeMockBridge | undefined;
  const stop = async () => {
    await bridge?.close();
    await stack?.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    stack = await startLocalStack({
      dataDir,
      ports: { postgres: 0, gateway: 0, postgrest: 0, stripeMock: 0 },
      jwtSecret: LOCAL_JWT_SECRET,
      migrationsDir: MIGRATIONS,
      ...(options.log && { log: options.log }),
      ...(options.ownDatabase && { databaseUrl: null }),
      ...(options.devClock && { devClock: true }),
    });
    bridge = await startStripeMockBridge(stack.env.STRIPE_API_BASE);
  } catch (error) {
    await stop();
    throw error;
  }
  const env = {
    ...stack.env,
    STRIPE_MOCK_URL: stack.env.STRIPE_API_BASE,
    STRIPE_API_BASE: bridge.url,
    ...LOCAL_STRIPE_ENV,
    URL: 'https://analytics.example.com',
  };
  return { stack, bridge, env, stop };
}
