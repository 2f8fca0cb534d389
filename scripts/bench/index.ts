// npm run bench: cold starts, warm overhead, round trips and webhook throughput of the
// billing functions, each beside its baseline, in one run against the real local stack.
// Writes docs/benchmarks.md and docs/benchmarks.svg. See docs/benchmarks.md "Method".
//
// Knobs (environment):
//   BENCH_RUNS=20     cold starts per function, per build (and of the no-op baseline)
//   BENCH_ROUNDS=20   interleaved handler/direct rounds per warm measurement
//   BENCH_SCALE=1     multiplies the warm batch sizes
//   BENCH_PROBES=1    0 skips the import-cost probes (stripe, supabase-js, …)
//   BENCH_OUT=docs/benchmarks.md   where the table goes (the chart goes beside it, .svg)
//   BENCH_VERBOSE=1   shows the stack's output

import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Stripe from 'stripe';
import { LOCAL_STRIPE_PRICE_ID, LOCAL_STRIPE_PRODUCT_ID, LOCAL_STRIPE_WEBHOOK_SECRET } from '../lib/local-defaults.ts';
import { issuerFor, mintAccessToken } from '../lib/tokens.ts';
import { startThrowawayStack, type ThrowawayStack } from '../stack/throwaway.ts';
import { reduceEvent } from '../../src/events/reduce.ts';
import { productScope } from '../../src/catalog/product-scope.ts';
import { loadStatusConfig } from '../../src/config/config.ts';
import { createStore } from '../../src/database/store.ts';
import { buildAll, BUILD_MODES, entries, shippedByNetlify, type Built } from './build.ts';
import { coldStart, summarizeTrace, writeRunner, type ColdRun, type LoadTrace, type RequestSpec } from './cold.ts';
import { entryPointColdStarts, type EntryRequests } from './entry.ts';
import { EventFactory, newCustomer, payloadOf, signPayload } from './events.ts';
import type { SeedUser, WarmConfig, WarmResult } from './protocol.ts';
import { machine, previousResults, writeReport, type ColdEntry, type Report } from './report.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

function knob(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number`);
  return value;
}

const RUNS = Math.max(1, Math.round(knob('BENCH_RUNS', 20)));
const ROUNDS = Math.max(2, Math.round(knob('BENCH_ROUNDS', 20)));
const SCALE = knob('BENCH_SCALE', 1);
const PROBES = knob('BENCH_PROBES', 1) !== 0;
const OUT = path.resolve(REPO_ROOT, process.env['BENCH_OUT'] ?? 'docs/benchmarks.md');
const VERBOSE = process.env['BENCH_VERBOSE'] === '1';

const WARM_CONCURRENCIES = [1, 10];
const WEBHOOK_CONCURRENCIES = [1, 10, 50];
const BATCH: Record<string, number> = {
  '1': Math.max(10, Math.round(20 * SCALE)),
  '10': Math.max(30, Math.round(80 * SCALE)),
  '50': Math.max(100, Math.round(200 * SCALE)),
};
const SEEDED_USERS = 16;
const SCOPE = productScope([LOCAL_STRIPE_PRICE_ID], [LOCAL_STRIPE_PRODUCT_ID]);

const progress = (line: string) => process.stderr.write(`[bench] ${line}\n`);
const started = performance.now();
const loadAtStart = loadavg();
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;

let stack: ThrowawayStack | undefined;
let workDir: string | undefined;
const children = new Set<number>();

async function shutdown(): Promise<void> {
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await stack?.stop();
  stack = undefined;
  if (workDir) await rm(workDir, { recursive: true, force: true });
  workDir = undefined;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    progress(`${sig}: stopping`);
    void shutdown().finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  workDir = await mkdtemp(path.join(tmpdir(), 'billing-bench-'));
  const previous = await previousResults(OUT);

  // The stack, as the tests start it: free ports, a fresh database in a temporary folder.
  progress('starting the local stack');
  stack = await startThrowawayStack('bench', VERBOSE ? { log: (line: string) => process.stderr.write(`${line}\n`) } : {});
  const { env, bridge } = stack;
  progress(`stack up (${elapsed()})`);

  const factory = new EventFactory();
  const { returning, subscribed } = await seed(env, factory);

  // What ships first: the zips through Netlify's entry point, beside a zipped no-op.
  progress(`netlify build --offline and entry-point cold starts (${elapsed()})`);
  const entryRequests: EntryRequests = {
    full: (name, run) => {
      const first = firstRequest(name, run, factory, returning, subscribed);
      return { request: first.spec, expect: first.expect ?? 200 };
    },
  };
  const entry = await entryPointColdStarts({ runs: RUNS, env, requests: entryRequests, progress });

  progress('bundling');
  const list = await entries(REPO_ROOT, workDir, PROBES);
  const built = await buildAll(REPO_ROOT, workDir, list);
  const runner = await writeRunner(workDir);
  const shipped = await shippedByNetlify(REPO_ROOT, workDir, built);
  if (shipped?.some((s) => !s.sameAsMirror)) progress('warning: the netlify build differs from zip-it-and-ship-it\'s bundle');

  const cold = await coldStarts(built, runner, env, factory, returning, subscribed);

  progress(`warm overhead, round trips and webhook throughput (${elapsed()})`);
  const bundles = Object.fromEntries(
    built.filter((b) => b.mode === 'esbuild' && b.entry.kind === 'function').map((b) => [b.entry.name, b.file]),
  );
  const warm = await runWarm({
    env,
    bundles,
    bridgeUrl: bridge.url,
    returning,
    subscribed,
    rounds: ROUNDS,
    batch: BATCH,
    warmConcurrencies: WARM_CONCURRENCIES,
    webhookConcurrencies: WEBHOOK_CONCURRENCIES,
    resultFile: path.join(workDir, 'warm-result.json'),
  });

  const report: Report = {
    date: new Date().toISOString(),
    machine: machine(),
    knobs: { runs: RUNS, rounds: ROUNDS, batch: BATCH, probes: PROBES },
    entry,
    cold,
    shipped,
    warm,
    totalSeconds: (performance.now() - started) / 1000,
    load: { start: loadAtStart, end: loadavg() },
  };
  const { markdown, svg } = await writeReport(OUT, report, previous);
  progress(`wrote ${path.relative(REPO_ROOT, markdown)} and ${path.relative(REPO_ROOT, svg)} (${elapsed()})`);
}

/** Makes `userId` the owner of a new team, as the product's server would (service role). */
async function addOwner(env: Record<string, string>, teamId: string, userId: string): Promise<void> {
  const key = env['SUPABASE_SERVICE_ROLE_KEY'] ?? '';
  const response = await fetch(new URL('rest/v1/billing_team_members', `${env['SUPABASE_URL'] ?? ''}/`), {
    method: 'POST',
    headers: { apikey: key, authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ team_id: teamId, user_id: userId, role: 'owner' }),
  });
  if (!response.ok) throw new Error(`seed: adding a team owner: ${response.status} ${await response.text()}`);
}

/** Users the requests act for: returning (a stored customer) and subscribed (active). */
async function seed(env: Record<string, string>, factory: EventFactory): Promise<{ returning: SeedUser[]; subscribed: SeedUser[] }> {
  const store = createStore(loadStatusConfig(env).store);
  const issuer = issuerFor(env['SUPABASE_URL'] ?? '');
  const secret = env['SUPABASE_JWT_SECRET'] ?? '';
  const returning: SeedUser[] = [];
  const subscribed: SeedUser[] = [];
  const now = Math.floor(Date.now() / 1000);
  const applyHistory = async (customer: ReturnType<typeof newCustomer>) => {
    for (const event of factory.history(customer, now - 3600)) {
      const reduction = reduceEvent(JSON.parse(payloadOf(event)) as Stripe.Event, SCOPE);
      if (reduction.action !== 'apply') throw new Error(`seed: ${event.type} not applied`);
      await store.applyEvent({ id: event.id, type: event.type, created: event.created, livemode: event.livemode, apiVersion: null, change: reduction.change });
    }
  };
  for (let i = 0; i < SEEDED_USERS * 2; i += 1) {
    const customer = newCustomer();
    const token = mintAccessToken({ sub: customer.userId, email: customer.email, secret, issuer, expiresIn: 4 * 3600 });
    await store.linkCustomer(customer.userId, customer.customerId, customer.email);
    // A team the user owns, with a customer of its own in the same state as the user's:
    // its subscription is the team's through that customer's link.
    const teamId = randomUUID();
    await addOwner(env, teamId, customer.userId);
    const teamCustomer = { ...newCustomer(), userId: customer.userId, email: customer.email };
    await store.linkCustomer(teamId, teamCustomer.customerId, customer.email);
    const user: SeedUser = { id: customer.userId, email: customer.email, token, customerId: customer.customerId, teamId };
    if (i % 2 === 0) {
      returning.push(user);
      continue;
    }
    await applyHistory(customer);
    await applyHistory(teamCustomer);
    subscribed.push(user);
  }
  return { returning, subscribed };
}

const BASE = 'https://bench.local/api/stripe';

/** The first real request each entry answers in a cold start (fresh for every run), and
 *  the status it must get. A function this does not know gets a POST and any status below 500. */
function firstRequest(
  name: string,
  run: number,
  factory: EventFactory,
  returning: SeedUser[],
  subscribed: SeedUser[],
): { spec: RequestSpec; expect: number | undefined } {
  const pick = (users: SeedUser[]) => {
    const user = users[run % users.length];
    if (!user) throw new Error('no seeded users');
    return user;
  };
  const authed = (pathname: string, method: string, user: SeedUser): RequestSpec => ({
    url: `${BASE}/${pathname}`,
    method,
    headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
  });
  switch (name) {
    case 'checkout':
      return { spec: authed('checkout', 'POST', pick(returning)), expect: 200 };
    case 'portal':
      return { spec: authed('portal', 'POST', pick(subscribed)), expect: 200 };
    case 'status':
      return { spec: authed('subscription', 'GET', pick(subscribed)), expect: 200 };
    case 'team checkout': {
      const user = pick(returning);
      return { spec: { ...authed('checkout', 'POST', user), body: JSON.stringify({ team: user.teamId ?? null }) }, expect: 200 };
    }
    case 'team status': {
      const user = pick(subscribed);
      return { spec: authed(`subscription?team=${user.teamId ?? ''}`, 'GET', user), expect: 200 };
    }
    case 'webhook': {
      const event = factory.event('customer.subscription.updated', newCustomer(), Math.floor(Date.now() / 1000));
      const payload = payloadOf(event);
      const headers = { 'stripe-signature': signPayload(payload, LOCAL_STRIPE_WEBHOOK_SECRET), 'content-type': 'application/json' };
      return { spec: { url: `${BASE}/webhook`, method: 'POST', headers, body: payload }, expect: 200 };
    }
    case 'not-found':
      return { spec: { url: `${BASE}/nothing-here`, method: 'GET', headers: {} }, expect: 404 };
    default:
      return {
        spec: { url: `${BASE}/${name}`, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' },
        expect: name === 'noop' || name.startsWith('import ') ? 200 : undefined,
      };
  }
}

function preflightOf(name: string): RequestSpec {
  return {
    url: `${BASE}/${name}`,
    method: 'OPTIONS',
    headers: { origin: 'https://analytics.example.com', 'access-control-request-method': 'POST' },
  };
}

async function coldStarts(
  built: readonly Built[],
  runner: string,
  env: Record<string, string>,
  factory: EventFactory,
  returning: SeedUser[],
  subscribed: SeedUser[],
): Promise<ColdEntry[]> {
  const results = new Map<Built, ColdRun[]>(built.map((b) => [b, []]));
  const options = preflightOf;
  // Round-robin: every round runs every entry once, in both builds, starting each round
  // one place further on, so no entry always follows the same neighbour.
  for (let run = 0; run < RUNS; run += 1) {
    progress(`cold starts: round ${run + 1}/${RUNS} (${elapsed()})`);
    for (let k = 0; k < built.length; k += 1) {
      const b = built[(k + run) % built.length];
      if (!b) continue;
      const first = firstRequest(b.entry.name, run, factory, returning, subscribed);
      const { loaded: _l, loadedAtImport: _i, body: _b, ...measured } = await coldStart({
        runner,
        built: b,
        options: options(b.entry.name),
        first: first.spec,
        expectStatus: first.expect,
        env,
      });
      results.get(b)?.push(measured);
    }
  }
  // One traced run each (module hooks slow a run down, so it is not timed).
  const traces = new Map<Built, { import: LoadTrace; total: LoadTrace }>();
  for (const b of built) {
    const first = firstRequest(b.entry.name, 0, factory, returning, subscribed);
    const traced = await coldStart({ runner, built: b, options: options(b.entry.name), first: first.spec, expectStatus: first.expect, env, trace: true });
    traces.set(b, { import: await summarizeTrace(traced.loadedAtImport), total: await summarizeTrace(traced.loaded) });
  }
  return built.map((b) => {
    const trace = traces.get(b);
    if (!trace) throw new Error('missing trace');
    return { name: b.entry.name, kind: b.entry.kind, mode: b.mode, bytes: b.bytes, packageInputBytes: b.packageInputBytes, runs: results.get(b) ?? [], trace };
  });
}

async function runWarm(config: WarmConfig): Promise<WarmResult> {
  if (!workDir) throw new Error('no work directory');
  const configFile = path.join(workDir, 'warm-config.json');
  await writeFile(configFile, JSON.stringify(config));
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'scripts/bench/warm.ts'), configFile], {
    cwd: REPO_ROOT,
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (child.pid !== undefined) children.add(child.pid);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (exitCode) => resolve(exitCode));
  });
  if (child.pid !== undefined) children.delete(child.pid);
  if (code !== 0) throw new Error(`warm worker exited with ${String(code)}`);
  return JSON.parse(await readFile(config.resultFile, 'utf8')) as WarmResult;
}

try {
  progress(`builds: ${BUILD_MODES.join(', ')}; ${RUNS} cold starts each; ${ROUNDS} warm rounds`);
  await main();
} catch (error) {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
} finally {
  await shutdown();
}
