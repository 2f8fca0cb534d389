// Reconciliation (src/events/reconcile.ts) against stripe-mock and the real database.
// stripe-mock is stateless: subscriptions.list always answers the same one fixture
// subscription, so every test here resets that subscription's rows and links a fresh
// user to its customer first. The tests of one file run one after another.

import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import webhook from '../netlify/functions/stripe-webhook.mts';
import {
  customerOfUser,
  reconcileOnSchedule,
  reconcileSubscriptions,
  RECONCILE_JOB,
  RECONCILE_EVENT_TYPE,
  type ReconcileDeps,
  type ReconcileOptions,
  type ReconcileProgress,
} from '../src/events/reconcile.ts';
import { snapshotOf } from '../src/database/snapshot.ts';
import { productScope } from '../src/catalog/product-scope.ts';
import { readSubscription } from '../src/stripe/objects.ts';
import { ConfigError, loadJobConfig, type StripeConfig } from '../src/config/config.ts';
import { createStore } from '../src/database/store.ts';
import { stripeOptions } from '../src/stripe/client.ts';
import { subscriptionEvent, type Ids } from './support/events.ts';
import { env, newUser, query, signedDelivery, stripeRequests, type TestUser } from './support/stack.ts';

const HOUR = 3600;

interface Row {
  user_id: string | null;
  stripe_customer_id: string;
  status: string | null;
  price_id: string | null;
  quantity: number | null;
  current_period_start: Date | null;
  current_period_end: Date | null;
  cancel_at_period_end: boolean;
  cancel_at: Date | null;
  canceled_at: Date | null;
  ended_at: Date | null;
  trial_start: Date | null;
  trial_end: Date | null;
  state_event_id: string | null;
  state_event_created: Date | null;
  updated_at: Date;
}

const config = () => loadJobConfig(process.env);
const store = () => createStore(config().store);
/** The Stripe client the functions build, made synchronously for the tests. */
const stripeFor = (c: StripeConfig): Stripe => new Stripe(c.secretKey, stripeOptions(c));
const deps = (stripe: Stripe = stripeFor(config().stripe)): ReconcileDeps => ({ stripe, store: store(), livemode: false, scope: scope() });
/** What this test sells: the price of stripe-mock's one subscription. */
const scope = () => productScope([fixture.items.data[0]?.price.id ?? 'price_missing']);

let fixture: Stripe.Subscription;
let fixtureCustomer: string;

beforeAll(async () => {
  // What stripe-mock answers, read rather than assumed.
  const list = await stripeFor(config().stripe).subscriptions.list({ status: 'all', limit: 100 });
  expect(list.data).toHaveLength(1);
  fixture = list.data[0] as Stripe.Subscription;
  fixtureCustomer = fixture.customer as string;
  expect(fixtureCustomer).toMatch(/^cus_/);
  expect(fixture.metadata).toEqual({}); // so the user comes from billing_customers
});

/** A fresh user linked to the fixture's customer, and no rows left from other tests. */
async function linkedUser(): Promise<TestUser> {
  await query('delete from billing_subscriptions where stripe_subscription_id = $1', [fixture.id]);
  await query('delete from billing_customers where stripe_customer_id = $1', [fixtureCustomer]);
  await query('delete from billing_deleted_customers where stripe_customer_id = $1', [fixtureCustomer]);
  const user = newUser();
  await query('insert into billing_customers (user_id, stripe_customer_id, email) values ($1, $2, $3)', [user.id, fixtureCustomer, user.email]);
  return user;
}

async function row(): Promise<Row | undefined> {
  return (await query<Row>('select * from billing_subscriptions where stripe_subscription_id = $1', [fixture.id]))[0];
}

const seconds = (date: Date | null | undefined) => (date ? date.getTime() / 1000 : null);

async function deliver(event: Stripe.Event): Promise<number> {
  return (await webhook(signedDelivery(JSON.stringify(event)))).status;
}

describe('reconcileSubscriptions', () => {
  it('writes the subscription Stripe has into the user row, as a webhook would', async () => {
    const user = await linkedUser();
    const progress: ReconcileProgress[] = [];
    const before = Math.floor(Date.now() / 1000);
    const report = await reconcileSubscriptions(deps(), { onProgress: (p) => progress.push(p) });
    const after = Math.floor(Date.now() / 1000);

    expect(report).toMatchObject({
      complete: true,
      resumeAfter: null,
      dryRun: false,
      pages: 1,
      seen: 1,
      applied: 1,
      stale: 0,
      duplicate: 0,
      skipped: 0,
      rateLimitRetries: 0,
      failures: [],
    });
    expect(progress).toEqual([expect.objectContaining({ type: 'page', page: 1, seen: 1, applied: 1, stale: 0 })]);

    const snapshot = snapshotOf(readSubscription(fixture), scope());
    const stored = await row();
    expect(stored).toMatchObject({ user_id: user.id, stripe_customer_id: fixtureCustomer, status: fixture.status, price_id: snapshot?.price_id });
    expect(stored?.current_period_start?.toISOString()).toBe(snapshot?.current_period_start);
    expect(stored?.current_period_end?.toISOString()).toBe(snapshot?.current_period_end);
    expect(stored?.state_event_id).toMatch(new RegExp(`^reconcile_${fixture.id}_\\d{13}$`));
    // Ordered at the second before the page was fetched, so any event of the fetch's own second wins.
    expect(seconds(stored?.state_event_created)).toBeGreaterThanOrEqual(before - 1);
    expect(seconds(stored?.state_event_created)).toBeLessThanOrEqual(after - 1);

    const [event] = await query<{ type: string; livemode: boolean; outcome: string }>('select * from stripe_events where id = $1', [stored?.state_event_id]);
    expect(event).toMatchObject({ type: RECONCILE_EVENT_TYPE, livemode: false, outcome: 'applied' });

    // What the dashboard reads.
    const account = await store().getAccount(user.id);
    expect(account?.subscription).toMatchObject({ stripeSubscriptionId: fixture.id, status: fixture.status });
  });

  it('run twice: the second run changes nothing material, with no errors and no duplicates', async () => {
    await linkedUser();
    const first = await reconcileSubscriptions(deps());
    const material = ({ state_event_id: _id, state_event_created: _created, updated_at: _updated, ...rest }: Row) => rest;
    const afterFirst = await row();

    const second = await reconcileSubscriptions(deps());
    expect(second.failures).toEqual([]);
    expect(second.duplicate).toBe(0);
    expect(second.applied + second.stale).toBe(1);
    expect(first.applied).toBe(1);
    const afterSecond = await row();
    expect(afterFirst && material(afterFirst)).toEqual(afterSecond && material(afterSecond));
  });

  it('a webhook event newer than the fetch is kept; an older one is replaced', async () => {
    const now = Math.floor(Date.now() / 1000);
    const state = { periodStart: now - 10 * 24 * HOUR, periodEnd: now + 20 * 24 * HOUR };

    // Newer: created an hour from now. 'trialing' ranks below the fixture's 'active',
    // so only the time can keep it.
    let user = await linkedUser();
    let ids: Ids = { userId: user.id, customerId: fixtureCustomer, subscriptionId: fixture.id };
    const newer = subscriptionEvent('customer.subscription.updated', ids, now + HOUR, { status: 'trialing', ...state });
    expect(await deliver(newer)).toBe(200);
    let report = await reconcileSubscriptions(deps());
    expect(report).toMatchObject({ applied: 0, stale: 1, failures: [] });
    expect(await row()).toMatchObject({ status: 'trialing', state_event_id: newer.id });

    // Older: created an hour ago. 'canceled' ranks above 'active', so only the time
    // lets the reconcile replace it.
    user = await linkedUser();
    ids = { userId: user.id, customerId: fixtureCustomer, subscriptionId: fixture.id };
    const older = subscriptionEvent('customer.subscription.deleted', ids, now - HOUR, { status: 'canceled', ...state, canceledAt: now - HOUR, endedAt: now - HOUR });
    expect(await deliver(older)).toBe(200);
    report = await reconcileSubscriptions(deps());
    expect(report).toMatchObject({ applied: 1, stale: 0, failures: [] });
    const stored = await row();
    expect(stored?.status).toBe(fixture.status);
    expect(stored?.state_event_id).toMatch(/^reconcile_/);

    // And a webhook delivered after the reconcile, newer than it, still wins.
    const later = subscriptionEvent('customer.subscription.updated', ids, now + HOUR, { status: 'past_due', ...state });
    expect(await deliver(later)).toBe(200);
    expect(await row()).toMatchObject({ status: 'past_due', state_event_id: later.id });
  });

  it('--dry-run fetches and counts, and writes nothing', async () => {
    await linkedUser();
    const report = await reconcileSubscriptions(deps(), { dryRun: true });
    expect(report).toMatchObject({ dryRun: true, complete: true, seen: 1, planned: 1, applied: 0, stale: 0, failures: [] });
    expect(await row()).toBeUndefined();
  });

  it('a failed write is reported and the run goes on', async () => {
    await linkedUser();
    const real = deps();
    const failing: ReconcileDeps = { ...real, store: { ...real.store, applyEvent: () => Promise.reject(new Error('database unavailable')) } };
    const report = await reconcileSubscriptions(failing);
    expect(report).toMatchObject({ complete: true, seen: 1, applied: 0 });
    expect(report.failures).toEqual([{ stage: 'apply', subscriptionId: fixture.id, message: 'database unavailable' }]);
  });
});

// A Stripe API in front of stripe-mock that answers 429 first, and records what it got.

interface StubServer {
  url: URL;
  requests: { method: string; url: URL; status: number }[];
  close(): Promise<void>;
}

const RATE_LIMIT_BODY = JSON.stringify({
  error: {
    type: 'invalid_request_error',
    code: 'rate_limit',
    message: 'Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.',
  },
});

async function startStripeStub(options: {
  target: string;
  rateLimited?: number;
  headers429?: Record<string, string>;
  /** Edit a proxied JSON answer, by the number of the proxied request (1-based). */
  edit?: (n: number, body: Record<string, unknown>) => void;
}): Promise<StubServer> {
  const target = new URL(options.target);
  const requests: StubServer['requests'] = [];
  let limited = 0;
  let proxied = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stub');
    if (limited < (options.rateLimited ?? 0)) {
      limited += 1;
      requests.push({ method: req.method ?? 'GET', url, status: 429 });
      req.resume();
      res.writeHead(429, { 'content-type': 'application/json', 'request-id': `req_stub_${limited}`, ...options.headers429 });
      res.end(RATE_LIMIT_BODY);
      return;
    }
    proxied += 1;
    const n = proxied;
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (up) => {
        const chunks: Buffer[] = [];
        up.on('data', (chunk: Buffer) => chunks.push(chunk));
        up.on('end', () => {
          let body = Buffer.concat(chunks).toString('utf8');
          if (options.edit && up.statusCode === 200) {
            const json = JSON.parse(body) as Record<string, unknown>;
            options.edit(n, json);
            body = JSON.stringify(json);
          }
          requests.push({ method: req.method ?? 'GET', url, status: up.statusCode ?? 502 });
          res.writeHead(up.statusCode ?? 502, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
          res.end(body);
        });
      },
    );
    upstream.on('error', (error) => {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { type: 'api_error', message: error.message } }));
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}`),
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('rate limits and pagination', () => {
  const stubs: StubServer[] = [];
  afterAll(async () => {
    await Promise.all(stubs.map((s) => s.close()));
  });

  async function stubbedDeps(stub: Parameters<typeof startStripeStub>[0]): Promise<{ stub: StubServer; deps: ReconcileDeps }> {
    const server = await startStripeStub(stub);
    stubs.push(server);
    // The real client factory (maxNetworkRetries 1), pointed at the stub.
    return { stub: server, deps: deps(stripeFor({ ...config().stripe, apiBase: server.url })) };
  }

  let sleeps: number[];
  const sleep = (ms: number) => {
    sleeps.push(ms);
    return Promise.resolve();
  };
  beforeEach(() => {
    sleeps = [];
  });

  it('retries a page answered 429, with growing delays, and then succeeds', async () => {
    await linkedUser();
    const { stub, deps: stubbed } = await stubbedDeps({ target: env('STRIPE_MOCK_URL'), rateLimited: 2 });
    const progress: ReconcileProgress[] = [];
    const report = await reconcileSubscriptions(stubbed, { sleep, onProgress: (p) => progress.push(p) });

    expect(report).toMatchObject({ complete: true, seen: 1, applied: 1, rateLimitRetries: 2, failures: [] });
    expect(sleeps).toEqual([1000, 2000]);
    // Exactly three calls, so the SDK did not retry the 429s itself: a 429 without
    // `Stripe-Should-Retry: true` is not retried by stripe-node, whatever maxNetworkRetries.
    expect(stub.requests.map((r) => r.status)).toEqual([429, 429, 200]);
    expect(stub.requests.every((r) => r.url.pathname === '/v1/subscriptions')).toBe(true);
    expect(progress.filter((p) => p.type === 'rate_limited')).toEqual([
      { type: 'rate_limited', page: 1, attempt: 1, delayMs: 1000 },
      { type: 'rate_limited', page: 1, attempt: 2, delayMs: 2000 },
    ]);
    expect((await row())?.status).toBe(fixture.status);
  });

  it('a 429 with Stripe-Should-Retry: true is retried by the SDK first (once, maxNetworkRetries 1), then by us', async () => {
    await linkedUser();
    const { stub, deps: stubbed } = await stubbedDeps({ target: env('STRIPE_MOCK_URL'), rateLimited: 2, headers429: { 'stripe-should-retry': 'true' } });
    const report = await reconcileSubscriptions(stubbed, { sleep });
    expect(report).toMatchObject({ complete: true, seen: 1, rateLimitRetries: 1, failures: [] });
    expect(sleeps).toEqual([1000]);
    expect(stub.requests.map((r) => r.status)).toEqual([429, 429, 200]);
  });

  it('gives up after maxRateLimitRetries and reports the page as failed', async () => {
    const { stub, deps: stubbed } = await stubbedDeps({ target: env('STRIPE_MOCK_URL'), rateLimited: 100 });
    const report = await reconcileSubscriptions(stubbed, { sleep, maxRateLimitRetries: 3 });
    expect(report).toMatchObject({ complete: false, pages: 0, seen: 0, rateLimitRetries: 3 });
    expect(report.failures).toEqual([{ stage: 'list', subscriptionId: null, message: expect.stringMatching(/^page 1: Too many requests/) as unknown }]);
    expect(sleeps).toEqual([1000, 2000, 4000]);
    expect(stub.requests).toHaveLength(4);
  });

  it('on a schedule: one pass paged across runs within the budget, then not due for a day', async () => {
    await linkedUser();
    await query('delete from billing_jobs where name = $1', [RECONCILE_JOB]);
    const { stub, deps: stubbed } = await stubbedDeps({
      target: env('STRIPE_MOCK_URL'),
      edit: (n, body) => {
        if (n === 1) body['has_more'] = true;
      },
    });
    let clock = Date.now();
    const now = () => new Date(clock);
    // A usage key 49 hours old: each run that holds the lease folds such keys into the
    // hourly totals (billing_usage_fold, test/usage.test.ts).
    const subject = randomUUID();
    await query(
      `insert into billing_usage_keys (subject_id, meter, key, result, amount, hour, created_at)
       values ($1, 'pageviews', 'old', '{}', 7, date_trunc('hour', now() - interval '49 hours'), now() - interval '49 hours')`,
      [subject],
    );
    // A budget of 0: each run stops after its first page, as one at Netlify's 30 s would.
    const first = await reconcileOnSchedule(stubbed, { holder: 'test-1', budgetMs: 0, now });
    expect(first).toMatchObject({ status: 'paused', seen: 1, failed: 0 });
    expect(first.usageKeysFolded).toBeGreaterThanOrEqual(1);
    expect(await query('select key from billing_usage_keys where subject_id = $1', [subject])).toEqual([]);
    expect(await query('select amount::int from billing_usage_hourly where subject_id = $1', [subject])).toEqual([{ amount: 7 }]);
    const second = await reconcileOnSchedule(stubbed, { holder: 'test-2', budgetMs: 0, now });
    expect(second).toMatchObject({ status: 'done', seen: 1, failed: 0 });
    expect(stub.requests.map((r) => r.url.searchParams.get('starting_after'))).toEqual([null, fixture.id]);

    expect(await reconcileOnSchedule(stubbed, { holder: 'test-3', budgetMs: 0, now })).toMatchObject({ status: 'not due', seen: 0 });
    expect(stub.requests).toHaveLength(2);
    clock += 25 * 3600 * 1000;
    expect(await reconcileOnSchedule(stubbed, { holder: 'test-4', now })).toMatchObject({ status: 'done', seen: 1 });
    expect(stub.requests).toHaveLength(3);
    const [job] = await query<{ locked_by: string | null; last_summary: { status: string } }>('select * from billing_jobs where name = $1', [RECONCILE_JOB]);
    expect(job).toMatchObject({ locked_by: null, last_summary: { status: 'done' } });
  });

  it('follows has_more with starting_after, page by page', async () => {
    // stripe-mock never says has_more: pretend the first page has more.
    const { stub, deps: stubbed } = await stubbedDeps({
      target: env('STRIPE_MOCK_URL'),
      edit: (n, body) => {
        if (n === 1) body['has_more'] = true;
      },
    });
    const report = await reconcileSubscriptions(stubbed, { dryRun: true });
    expect(report).toMatchObject({ complete: true, pages: 2, seen: 2, planned: 2, failures: [] });
    const [first, second] = stub.requests.map((r) => r.url.searchParams);
    expect(first?.get('starting_after')).toBeNull();
    expect(second?.get('starting_after')).toBe(fixture.id);
    expect(second?.get('status')).toBe('all');
    expect(second?.get('limit')).toBe('100');
  });

  it('--user: lists only the user’s customer (customer=<id>)', async () => {
    const user = await linkedUser();
    const customerId = await customerOfUser(store(), user.id);
    expect(customerId).toBe(fixtureCustomer);
    expect(await customerOfUser(store(), newUser().id)).toBeNull();

    // Through the recording bridge, so the bridge sees the call too.
    const { stub, deps: stubbed } = await stubbedDeps({ target: env('STRIPE_API_BASE') });
    const options: ReconcileOptions = { customerId: customerId ?? undefined };
    const report = await reconcileSubscriptions(stubbed, options);
    expect(report).toMatchObject({ customerId: fixtureCustomer, seen: 1, applied: 1, failures: [] });

    const [sent] = stub.requests;
    expect(sent?.method).toBe('GET');
    expect(sent?.url.pathname).toBe('/v1/subscriptions');
    expect(Object.fromEntries(sent?.url.searchParams ?? [])).toEqual({ customer: fixtureCustomer, status: 'all', limit: '100' });
    // The recording bridge saw the same filtered call.
    const recorded = await stripeRequests((r) => r.method === 'GET' && r.path === '/v1/subscriptions' && r.params['customer'] === fixtureCustomer);
    expect(recorded.length).toBeGreaterThan(0);
  });
});

describe('loadJobConfig', () => {
  it('needs Stripe, Supabase and what we sell only, and names what is missing', () => {
    const loaded = loadJobConfig({
      STRIPE_SECRET_KEY: 'sk_live_abc',
      STRIPE_PRICE_ID: 'price_abc',
      SUPABASE_URL: 'https://abcd.supabase.co',
      SUPABASE_SERVICE_ROLE_KEY: 'service-role',
    });
    expect(loaded.stripe).toMatchObject({ mode: 'live', apiBase: undefined });
    expect(loaded.store.supabaseUrl.href).toBe('https://abcd.supabase.co/');

    let error: unknown;
    try {
      loadJobConfig({ STRIPE_SECRET_KEY: 'sk_test_1' });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variables).toEqual(['SUPABASE_URL', 'SUPABASE_SERVICE_ROLE_KEY', 'STRIPE_PRICE_ID']);
  });
});
