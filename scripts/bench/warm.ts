// The warm half of the benchmark, run by index.ts as a child process of its own (so
// the stack's gateway and bridge, which run in the parent, do not share its thread).
//
// For each endpoint it calls the function's default export in process (the netlify
// bundle, warm: deps built and connections open) and, interleaved, a "direct" baseline
// that makes the same backend calls with the same clients (src/database/store.ts createStore,
// src/stripe/client.ts createStripe) and no handler around them. It also counts, per
// request, the database and Stripe calls each endpoint makes.
//
// Logging: the functions' log lines are built as in production (JSON.stringify of every
// field), but console.log/warn/error are no-ops in this process, so nothing is written.
// On Netlify the line goes to stdout and the platform ships it; a terminal here would
// measure the terminal.

import http from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import type Stripe from 'stripe';
import { issuerFor, mintAccessToken } from '../lib/tokens.ts';
import { reduceEvent } from '../../src/events/reduce.ts';
import { REQUEST_LIMITS, type LimitedAction } from '../../src/http/request-limits.ts';
import { dashboardUrl } from '../../src/accounts/urls.ts';
import { loadCheckoutConfig, loadWebhookConfig, type CheckoutConfig } from '../../src/config/config.ts';
import { createStore, type BillingStore, type EventToApply } from '../../src/database/store.ts';
import { createStripe } from '../../src/stripe/client.ts';
import { EventFactory, HANDLED_TYPES, newCustomer, payloadOf, signPayload, UNHANDLED_TYPE, type Customer, type StripeEventShape } from './events.ts';
import type { PairedMeasure, RoundTrip, SeedUser, Side, WarmConfig, WarmResult } from './protocol.ts';
import { quantile, spread } from './stats.ts';

type Handler = (req: Request, context?: unknown) => Promise<Response>;

const started = performance.now();
const configFile = process.argv[2];
if (!configFile) throw new Error('usage: node scripts/bench/warm.ts <config.json>');
const config = JSON.parse(await readFile(configFile, 'utf8')) as WarmConfig;
Object.assign(process.env, config.env);
const progress = (line: string) => process.stderr.write(`[warm] ${line}\n`);

// Silence the functions' log lines (see the header).
const silent = () => {};
console.log = silent;
console.info = silent;
console.warn = silent;
console.error = silent;

// Count database calls: the store talks to PostgREST through node:http's request()
// (src/core/node-fetch.ts), read when called, so this wrapper sees the functions' calls and
// the baseline's alike (both pay for it equally).
const supabaseOrigin = new URL(config.env['SUPABASE_URL'] ?? '').origin;
const dbCalls: string[] = [];
const originalFetch = globalThis.fetch;
const originalRequest = http.request;
http.request = ((...args: Parameters<typeof http.request>) => {
  const [first, second] = args;
  if (typeof first === 'string' || first instanceof URL) {
    const target = new URL(first);
    const method = typeof second === 'object' ? second.method : undefined;
    if (target.origin === supabaseOrigin) dbCalls.push(`${method ?? 'GET'} ${target.pathname}`);
  }
  return originalRequest(...args);
}) as typeof http.request;

async function bridgeRequests(clear: boolean): Promise<string[]> {
  const response = await originalFetch(`${config.bridgeUrl}/__bridge/requests`, { method: clear ? 'DELETE' : 'GET' });
  const recorded = (await response.json()) as { method: string; path: string }[];
  return recorded.map((r) => `${r.method} ${r.path}`);
}

const handlers: Record<string, Handler> = {};
for (const [name, file] of Object.entries(config.bundles)) {
  const mod = (await import(pathToFileURL(file).href)) as { default: Handler };
  handlers[name] = mod.default;
}
const handler = (name: string): Handler => {
  const h = handlers[name];
  if (!h) throw new Error(`no bundle for ${name}`);
  return h;
};

// The baseline's clients: the same factories and options the functions use.
const checkoutConfig: CheckoutConfig = loadCheckoutConfig(process.env);
const scope = loadWebhookConfig(process.env).scope;
const store: BillingStore = createStore(checkoutConfig.store);
const stripe: Stripe = await createStripe(checkoutConfig.stripe);
const webhookSecret = config.env['STRIPE_WEBHOOK_SECRET'] ?? '';
const events = new EventFactory();
const appUrl = checkoutConfig.appUrl;

// The requests, as the dashboard and Stripe send them ------------------------------

const base = 'https://bench.local/api/stripe';
const authed = (path: string, method: string, token: string) =>
  new Request(`${base}/${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
const checkoutRequest = (user: SeedUser) => authed('checkout', 'POST', user.token);
const portalRequest = (user: SeedUser) => authed('portal', 'POST', user.token);
const statusRequest = (user: SeedUser) => authed('subscription', 'GET', user.token);
const delivery = (payload: string, signature = signPayload(payload, webhookSecret)) =>
  new Request(`${base}/webhook`, { method: 'POST', headers: { 'stripe-signature': signature, 'content-type': 'application/json' }, body: payload });

// The direct baseline: the calls src/accounts/{checkout,portal,status}.ts make ---------

/** The one database call an endpoint makes before Stripe (src/teams/subject.ts). */
const context = (user: SeedUser, action: LimitedAction | null) =>
  store.requestContext({ caller: user.id, team: null, ...(action && { limit: { action, ...REQUEST_LIMITS[action] } }) });

async function directCheckout(user: SeedUser): Promise<void> {
  const { account } = await context(user, 'checkout');
  const customerId = account?.stripeCustomerId;
  if (!customerId) throw new Error('returning user without a customer');
  const metadata = { userId: user.id, email: user.email };
  await stripe.checkout.sessions.create({
    mode: 'subscription',
    customer: customerId,
    allowed_payment_method_types: ['card'],
    line_items: [{ price: checkoutConfig.priceId ?? undefined, quantity: 1 }],
    success_url: dashboardUrl(appUrl, { checkout: 'success' }) + '&session_id={CHECKOUT_SESSION_ID}',
    cancel_url: dashboardUrl(appUrl, { checkout: 'canceled' }),
    client_reference_id: user.id,
    metadata,
    subscription_data: { metadata },
  });
}

async function directPortal(user: SeedUser): Promise<void> {
  const { account } = await context(user, 'portal');
  if (!account?.stripeCustomerId) throw new Error('subscribed user without a customer');
  await stripe.billingPortal.sessions.create({ customer: account.stripeCustomerId, return_url: dashboardUrl(appUrl) });
}

async function directStatus(user: SeedUser): Promise<void> {
  await context(user, null);
}

/** A batch sends a seeded user far more requests a minute than the request limit allows
 *  (src/http/request-limits.ts), which is the point of the limit; the bench measures
 *  the answers below it, so each batch starts with the counts cleared. */
async function clearRequestCounts(): Promise<void> {
  const key = config.env['SUPABASE_SERVICE_ROLE_KEY'] ?? '';
  const url = new URL('rest/v1/billing_request_counts?subject_id=not.is.null', `${config.env['SUPABASE_URL'] ?? ''}/`);
  const response = await originalFetch(url, { method: 'DELETE', headers: { apikey: key, authorization: `Bearer ${key}` } });
  if (!response.ok) throw new Error(`clearing the request counts: ${response.status} ${await response.text()}`);
}

const directOutcomes: Record<string, number> = {};
async function directApply(event: EventToApply): Promise<void> {
  const { outcome } = await store.applyEvent(event);
  directOutcomes[outcome] = (directOutcomes[outcome] ?? 0) + 1;
}

/** What the webhook writes for an event: reduced here, before any timing. */
function toApply(event: StripeEventShape): EventToApply {
  const reduction = reduceEvent(JSON.parse(payloadOf(event)) as Stripe.Event, scope);
  if (reduction.action !== 'apply') throw new Error(`${event.type} is not applied: ${reduction.action === 'flush' ? 'a meter flush' : reduction.reason}`);
  return { id: event.id, type: event.type, created: event.created, livemode: event.livemode, apiVersion: null, change: reduction.change };
}

async function expectOk(response: Response, expected = 200): Promise<void> {
  const body = await response.text();
  if (response.status !== expected) throw new Error(`expected ${expected}, got ${response.status} ${body}`);
}

// Round trips per request --------------------------------------------------------------

async function measureCalls(run: () => Promise<number | void>): Promise<{ status: number; dbCalls: string[]; stripeCalls: string[] }> {
  await bridgeRequests(true);
  dbCalls.length = 0;
  const status = (await run()) ?? 0;
  const db = [...dbCalls];
  return { status, dbCalls: db, stripeCalls: await bridgeRequests(false) };
}

async function send(name: string, req: Request): Promise<number> {
  const response = await handler(name)(req);
  await response.text();
  return response.status;
}

function newUser(): SeedUser {
  const customer = newCustomer();
  const token = mintAccessToken({ sub: customer.userId, email: customer.email, secret: config.env['SUPABASE_JWT_SECRET'] ?? '', issuer: issuerFor(config.env['SUPABASE_URL'] ?? '') });
  return { id: customer.userId, email: customer.email, token, customerId: '' };
}

const first = <T>(list: readonly T[]): T => {
  const item = list[0];
  if (item === undefined) throw new Error('no seeded users');
  return item;
};

async function roundTrips(): Promise<RoundTrip[]> {
  const trips: RoundTrip[] = [];
  const add = async (scenario: string, run: () => Promise<number>, direct?: () => Promise<void>) => {
    const measured = await measureCalls(run);
    const trip: RoundTrip = { scenario, ...measured };
    if (direct) {
      const { dbCalls: d, stripeCalls: s } = await measureCalls(direct);
      trip.direct = { dbCalls: d, stripeCalls: s };
    }
    trips.push(trip);
  };
  const returning = first(config.returning);
  const subscribed = first(config.subscribed);

  await add('OPTIONS preflight (any endpoint)', () => send('checkout', new Request(`${base}/checkout`, { method: 'OPTIONS' })));
  await add('checkout: new user', () => send('checkout', checkoutRequest(newUser())));
  await add('checkout: returning user', () => send('checkout', checkoutRequest(returning)), () => directCheckout(returning));
  await add('checkout: already subscribed (400)', () => send('checkout', checkoutRequest(subscribed)));
  await add('portal', () => send('portal', portalRequest(subscribed)), () => directPortal(subscribed));
  await add('portal: no subscription (400)', () => send('portal', portalRequest(returning)));
  await add('status', () => send('status', statusRequest(subscribed)), () => directStatus(subscribed));
  await add('any endpoint: invalid token (401)', () => send('status', authed('subscription', 'GET', 'a.b.c')));

  const customer = newCustomer();
  const now = Math.floor(Date.now() / 1000);
  for (const [i, type] of HANDLED_TYPES.entries()) {
    const event = events.event(type, customer, now + i);
    await add(`webhook: ${type}`, () => send('webhook', delivery(payloadOf(event))), () => directApply(toApply(events.event(type, newCustomer(), now + i))));
  }
  const unhandled = events.event(UNHANDLED_TYPE, customer, now);
  await add(`webhook: ${UNHANDLED_TYPE} (not handled)`, () => send('webhook', delivery(payloadOf(unhandled))));
  const duplicate = events.event('customer.subscription.updated', customer, now + 100);
  await send('webhook', delivery(payloadOf(duplicate)));
  await add('webhook: duplicate delivery', () => send('webhook', delivery(payloadOf(duplicate))));
  await add('webhook: bad signature (400)', () => send('webhook', delivery(payloadOf(duplicate), 't=1,v1=00')));
  return trips;
}

// Paired, interleaved batches ---------------------------------------------------------

interface Batch {
  latencies: number[];
  wallMs: number;
  errors: number;
}

/** Runs ops through `concurrency` workers; each op's latency is its own call, ms. */
async function runBatch(ops: (() => Promise<void>)[], concurrency: number): Promise<Batch> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, ops.length) }, async () => {
      for (let i = next++; i < ops.length; i = next++) {
        const op = ops[i];
        if (!op) continue;
        const t = performance.now();
        try {
          await op();
          latencies.push(performance.now() - t);
        } catch (error) {
          errors += 1;
          if (errors === 1) progress(`error: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    }),
  );
  return { latencies, wallMs: performance.now() - t0, errors };
}

interface Pair {
  /** Builds a batch's ops before it is timed: requests, signed payloads, fresh events. */
  handler: (n: number) => (() => Promise<void>)[];
  direct: (n: number) => (() => Promise<void>)[];
}

async function paired(endpoint: string, concurrency: number, n: number, pair: Pair): Promise<PairedMeasure> {
  // One unrecorded batch of each first: JIT, connection pools, PostgREST's schema cache.
  await clearRequestCounts();
  await runBatch(pair.handler(Math.max(20, concurrency * 2)), concurrency);
  await clearRequestCounts();
  await runBatch(pair.direct(Math.max(20, concurrency * 2)), concurrency);
  const rounds: { handler: Batch; direct: Batch }[] = [];
  for (let round = 0; round < config.rounds; round += 1) {
    const order: ('handler' | 'direct')[] = round % 2 === 0 ? ['handler', 'direct'] : ['direct', 'handler'];
    const result: Partial<Record<'handler' | 'direct', Batch>> = {};
    for (const side of order) {
      await clearRequestCounts();
      const ops = pair[side](n);
      result[side] = await runBatch(ops, concurrency);
    }
    if (!result.handler || !result.direct) throw new Error('missing batch');
    rounds.push({ handler: result.handler, direct: result.direct });
  }
  const side = (key: 'handler' | 'direct'): Side => {
    const all = rounds.flatMap((r) => r[key].latencies);
    const throughputs = rounds.map((r) => (r[key].latencies.length / r[key].wallMs) * 1000);
    const tp = spread(throughputs);
    return { p50: quantile(all, 0.5), p99: quantile(all, 0.99), throughput: tp.median, throughputSpread: tp, errors: rounds.reduce((s, r) => s + r[key].errors, 0) };
  };
  const per = (f: (b: Batch) => number) => spread(rounds.map((r) => f(r.handler) / f(r.direct)));
  const handlerSide = side('handler');
  const directSide = side('direct');
  const measure: PairedMeasure = {
    endpoint,
    concurrency,
    requests: n,
    handler: handlerSide,
    direct: directSide,
    p50Ratio: per((b) => quantile(b.latencies, 0.5)),
    p99Ratio: handlerSide.p99 / directSide.p99,
    // Inverted: direct req/s over handler req/s, so that >1 means the handler is slower.
    throughputRatio: per((b) => b.wallMs / b.latencies.length),
  };
  progress(
    `${endpoint} c=${concurrency}: handler p50 ${measure.handler.p50.toFixed(2)} ms, direct ${measure.direct.p50.toFixed(2)} ms, ` +
      `ratio ${measure.p50Ratio.median.toFixed(2)} (${measure.p50Ratio.min.toFixed(2)}–${measure.p50Ratio.max.toFixed(2)})`,
  );
  return measure;
}

const cycle = <T>(list: readonly T[], n: number): T[] => Array.from({ length: n }, (_, i) => list[i % list.length] as T);

function userPair(
  name: string,
  users: readonly SeedUser[],
  request: (user: SeedUser) => Request,
  direct: (user: SeedUser) => Promise<void>,
): Pair {
  return {
    handler: (n) =>
      cycle(users, n).map((user) => {
        const req = request(user);
        const h = handler(name);
        return async () => expectOk(await h(req));
      }),
    direct: (n) => cycle(users, n).map((user) => () => direct(user)),
  };
}

/** Fresh customers' event histories, n events in all (each delivery new to the database). */
function freshEvents(n: number): StripeEventShape[] {
  const list: StripeEventShape[] = [];
  const created = Math.floor(Date.now() / 1000);
  while (list.length < n) {
    const customer: Customer = newCustomer();
    list.push(...events.history(customer, created));
  }
  return list.slice(0, n);
}

const webhookPair: Pair = {
  handler: (n) =>
    freshEvents(n).map((event) => {
      const req = delivery(payloadOf(event));
      const h = handler('webhook');
      return async () => expectOk(await h(req));
    }),
  direct: (n) =>
    freshEvents(n).map((event) => {
      const apply = toApply(event);
      return () => directApply(apply);
    }),
};

const batchSize = (concurrency: number): number => config.batch[String(concurrency)] ?? Math.max(100, concurrency * 10);

// Run ----------------------------------------------------------------------------------

progress('round trips per request');
const trips = await roundTrips();

const warm: PairedMeasure[] = [];
const endpoints: [string, Pair][] = [
  ['checkout', userPair('checkout', config.returning, checkoutRequest, directCheckout)],
  ['portal', userPair('portal', config.subscribed, portalRequest, directPortal)],
  ['status', userPair('status', config.subscribed, statusRequest, directStatus)],
];
for (const concurrency of config.warmConcurrencies) {
  for (const [endpoint, pair] of endpoints) warm.push(await paired(endpoint, concurrency, batchSize(concurrency), pair));
}
const webhook: PairedMeasure[] = [];
for (const concurrency of config.webhookConcurrencies) {
  webhook.push(await paired('webhook', concurrency, batchSize(concurrency), webhookPair));
}

const result: WarmResult = { roundTrips: trips, warm, webhook, directOutcomes, elapsedMs: performance.now() - started };
await writeFile(config.resultFile, JSON.stringify(result));
process.exit(0);
