// Smoke test of the local stack: start it on free ports, call PostgREST through the
// gateway and stripe-mock once each, stop it.
//
//   node scripts/stack/smoke.ts            # throwaway data directory, removed afterwards
//   node scripts/stack/smoke.ts <dataDir>  # keep/reuse a data directory (tests restarts)
//   VERBOSE=1 node scripts/stack/smoke.ts  # also print component output
//
// It applies supabase/migrations, or, when that has no *.sql yet or with
// SMOKE_TEST_MIGRATION=1, a one-table test migration, and then also writes to and
// reads that table through the gateway.

import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startLocalStack, type LocalStack } from './index.ts';

const repoMigrations = fileURLToPath(new URL('../../supabase/migrations/', import.meta.url));
const JWT_SECRET = 'super-secret-jwt-token-with-at-least-32-characters-long';

const SMOKE_MIGRATION = `
create table public.smoke_items (
  id bigint generated always as identity primary key,
  label text not null,
  created_at timestamptz not null default now()
);
alter table public.smoke_items enable row level security;
grant select, insert on public.smoke_items to service_role;
`;

const cleanup: string[] = [];
let stack: LocalStack | undefined;

async function main(): Promise<void> {
  const keptDataDir = process.argv[2];
  const dataDir = keptDataDir ?? (await mkdtemp(join(tmpdir(), 'billing-stack-pg-')));
  if (!keptDataDir) cleanup.push(dataDir);

  const realMigrations =
    process.env.SMOKE_TEST_MIGRATION !== '1' && (await readdir(repoMigrations).catch(() => [])).some((f) => f.endsWith('.sql'));
  let migrationsDir = repoMigrations;
  if (!realMigrations) {
    migrationsDir = await mkdtemp(join(tmpdir(), 'billing-stack-migrations-'));
    cleanup.push(migrationsDir);
    await writeFile(join(migrationsDir, '00000000000000_smoke.sql'), SMOKE_MIGRATION);
  }
  console.log(`dataDir: ${dataDir}\nmigrations: ${migrationsDir}${realMigrations ? '' : ' (smoke test migration)'}`);

  const lines: string[] = [];
  const t0 = performance.now();
  stack = await startLocalStack({
    dataDir,
    ports: { postgres: 0, gateway: 0, postgrest: 0, stripeMock: 0 },
    jwtSecret: JWT_SECRET,
    migrationsDir,
    log: (line) => (process.env.VERBOSE ? console.log(line) : line.startsWith('[stack]') && lines.push(line)),
  });
  const startupMs = performance.now() - t0;
  for (const line of lines) console.log(line);
  console.log(`stack started in ${startupMs.toFixed(0)} ms`);
  console.log(JSON.stringify({ ...stack.env, SUPABASE_SERVICE_ROLE_KEY: `${stack.env.SUPABASE_SERVICE_ROLE_KEY.slice(0, 20)}…` }, null, 2));

  const key = stack.env.SUPABASE_SERVICE_ROLE_KEY;
  const rest = { apikey: key, Authorization: `Bearer ${key}` };

  const root = await fetch(`${stack.env.SUPABASE_URL}/rest/v1/`, { headers: rest });
  const openapi = (await root.json()) as { info?: { title?: string }; paths?: Record<string, unknown> };
  console.log(`GET /rest/v1/ -> ${root.status}; ${openapi.info?.title ?? '?'}; paths: ${Object.keys(openapi.paths ?? {}).join(' ')}`);
  check(root.status === 200, 'GET /rest/v1/ should answer 200');

  if (!realMigrations) {
    const insert = await fetch(`${stack.env.SUPABASE_URL}/rest/v1/smoke_items?select=id,label`, {
      method: 'POST',
      headers: { ...rest, 'Content-Type': 'application/json', Prefer: 'return=representation' },
      body: JSON.stringify({ label: 'hello through the gateway' }),
    });
    console.log(`POST /rest/v1/smoke_items -> ${insert.status} ${await insert.text()}`);
    check(insert.status === 201, 'insert should answer 201');

    const anon = await fetch(`${stack.env.SUPABASE_URL}/rest/v1/smoke_items`);
    console.log(`GET /rest/v1/smoke_items without a key -> ${anon.status} ${await anon.text()}`);
    check(anon.status === 401, 'anon has no grant on smoke_items, so 401');
  }

  const notFound = await fetch(`${stack.env.SUPABASE_URL}/auth/v1/user`);
  console.log(`GET /auth/v1/user -> ${notFound.status} ${await notFound.text()}`);
  check(notFound.status === 404, 'paths outside /rest/v1 should answer 404');

  const customer = await fetch(`${stack.env.STRIPE_API_BASE}/v1/customers`, {
    method: 'POST',
    headers: { Authorization: 'Bearer sk_test_123', 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ email: 'smoke@example.com' }),
  });
  const body = (await customer.json()) as { id?: string; object?: string };
  console.log(`POST /v1/customers -> ${customer.status} ${body.object ?? '?'} ${body.id ?? ''}`);
  check(customer.status === 200 && body.object === 'customer', 'stripe-mock should create a customer');
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new Error(`smoke check failed: ${message}`);
}

async function shutdown(): Promise<void> {
  const t0 = performance.now();
  await stack?.stop();
  if (stack) console.log(`stack stopped in ${(performance.now() - t0).toFixed(0)} ms`);
  stack = undefined;
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: stopping the stack`);
    void shutdown().finally(() => process.exit(130));
  });
}

try {
  await main();
  console.log('smoke test passed');
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
} finally {
  await shutdown();
}
