// Faults around the functions, with nothing lost: the real PostgREST and PostgreSQL
// stopped and started again, a database that waits on locks, and a Stripe that is
// down, slow or failing. This file runs its own local stack, so stopping parts of it
// does not disturb the other test files.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import portal from '../netlify/functions/stripe-portal.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { LOCAL_JWT_SECRET } from '../scripts/lib/local-defaults.ts';
import { startLocalStack, type LocalStack } from '../scripts/stack/index.ts';
import { checkoutCompletedEvent, newIds } from './support/events.ts';
import { proxyInPlaceOf, type Proxy } from './support/proxy.ts';
import { authedPost, newUser, signedDelivery, stripeRequests } from './support/stack.ts';

const T = 1_790_000_000;
/** What a function may take to answer when something it needs has failed. Netlify
 *  ends synchronous functions at 10 s; we answer well before. */
const BOUND_MS = 9_000;

let stack: LocalStack;
let dataDir: string;
const saved: Record<string, string | undefined> = {};

/** One connection per query: the server under it is stopped and started in these tests. */
async function sql<Row extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<Row[]> {
  const client = new pg.Client({ connectionString: stack.env.DATABASE_URL });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<Row>(text, params)).rows;
  } finally {
    await client.end().catch(() => {});
  }
}

async function timed<T>(work: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

/** Stripe's redelivery: the same payload again until it is accepted, as Stripe retries. */
async function redeliverUntilAccepted(payload: string, deadlineMs: number): Promise<number> {
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 1; ; attempt += 1) {
    const response = await webhook(signedDelivery(payload));
    if (response.status === 200) return attempt;
    if (Date.now() > deadline) throw new Error(`not accepted after ${attempt} deliveries (last status ${response.status})`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'billing-faults-db-'));
  stack = await startLocalStack({
    dataDir,
    ports: { postgres: 0, gateway: 0, postgrest: 0, stripeMock: 0 },
    jwtSecret: LOCAL_JWT_SECRET,
    migrationsDir: path.resolve(import.meta.dirname, '../supabase/migrations'),
    // Its own database (this worker's DATABASE_URL is the shared one), and the shared stripe-mock.
    databaseUrl: null,
  });
  for (const name of ['SUPABASE_URL', 'SUPABASE_SERVICE_ROLE_KEY', 'DATABASE_URL'] as const) {
    saved[name] = process.env[name];
    process.env[name] = stack.env[name];
  }
});

afterAll(async () => {
  Object.assign(process.env, saved);
  await stack.stop();
  await rm(dataDir, { recursive: true, force: true });
});

describe('the database fails during a webhook', () => {
  it('PostgREST down: 500 quickly, nothing recorded; back up: the redelivery applies it once', async () => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const payload = JSON.stringify(event);
    await stack.control.postgrest.stop();
    try {
      const { value: response, ms } = await timed(() => webhook(signedDelivery(payload)));
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'Internal server error' });
      expect(ms).toBeLessThan(BOUND_MS);
    } finally {
      await stack.control.postgrest.start();
    }
    expect(await sql('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);

    await redeliverUntilAccepted(payload, 20_000);
    expect((await webhook(signedDelivery(payload))).status).toBe(200); // and once more: a duplicate
    expect(await sql('select outcome from stripe_events where id = $1', [event.id])).toEqual([{ outcome: 'applied' }]);
    expect(await sql('select 1 from billing_subscriptions where stripe_subscription_id = $1', [(event.data.object as { subscription: string }).subscription])).toHaveLength(1);
  });

  it('PostgreSQL down: 500 within the bound; back up: the redelivery applies it once', { timeout: 120_000 }, async () => {
    const event = checkoutCompletedEvent(newIds(newUser().id), T);
    const payload = JSON.stringify(event);
    await stack.control.postgres.stop();
    try {
      const { value: response, ms } = await timed(() => webhook(signedDelivery(payload)));
      expect(response.status).toBe(500);
      expect(ms).toBeLessThan(BOUND_MS);
    } finally {
      await stack.control.postgres.start();
    }
    expect(await sql('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(0);

    // PostgREST reconnects by itself, with backoff; Stripe keeps redelivering meanwhile.
    await redeliverUntilAccepted(payload, 90_000);
    expect((await webhook(signedDelivery(payload))).status).toBe(200);
    expect(await sql('select outcome from stripe_events where id = $1', [event.id])).toEqual([{ outcome: 'applied' }]);
  });

  it('a database that waits on a lock: 500 after the lock timeout, recorded as failed but not processed; then applied', async () => {
    const ids = newIds(newUser().id);
    const event = checkoutCompletedEvent(ids, T);
    const payload = JSON.stringify(event);
    const holder = new pg.Client({ connectionString: stack.env.DATABASE_URL });
    await holder.connect();
    try {
      // Another transaction holds this customer's lock, as a slow delivery would.
      await holder.query('select pg_advisory_lock(hashtextextended($1, 0))', [`billing_customer:${ids.customerId}`]);
      const { value: response, ms } = await timed(() => webhook(signedDelivery(payload)));
      expect(response.status).toBe(500);
      expect(ms).toBeGreaterThan(2_500);
      expect(ms).toBeLessThan(BOUND_MS);
      // The attempt is on record, with why, so it can be found; nothing was applied.
      const [attempt] = await sql<{ outcome: string; reason: string }>('select outcome, reason from stripe_events where id = $1', [event.id]);
      expect(attempt?.outcome).toBe('failed');
      expect(attempt?.reason).toContain('lock timeout');
      expect(await sql('select 1 from billing_subscriptions where stripe_subscription_id = $1', [ids.subscriptionId])).toHaveLength(0);
    } finally {
      await holder.end();
    }
    expect((await webhook(signedDelivery(payload))).status).toBe(200);
    expect(await sql('select outcome from stripe_events where id = $1', [event.id])).toEqual([{ outcome: 'applied' }]);
  });
});

describe('Stripe fails during checkout and portal', () => {
  type Mode = 'ok' | 'slow' | '5xx' | 'sessions-fail';
  let mode: Mode = 'ok';
  let proxy: Proxy;

  beforeAll(async () => {
    proxy = await proxyInPlaceOf('STRIPE_API_BASE', (req, res) => {
      if (mode === 'slow') return true; // never answers: the client's timeout must end it
      if (mode === '5xx' || (mode === 'sessions-fail' && req.url?.startsWith('/v1/checkout/sessions'))) {
        res.writeHead(500, { 'content-type': 'application/json', 'request-id': 'req_fault' });
        res.end(JSON.stringify({ error: { type: 'api_error', message: 'Simulated Stripe outage' } }));
        return true;
      }
      return false;
    });
  });

  afterAll(() => proxy.close());

  it.each(['5xx', 'slow'] as const)('Stripe %s: checkout answers 500 within the bound, and nothing is stored', async (fault) => {
    const user = newUser();
    mode = fault;
    try {
      const { value: response, ms } = await timed(() => checkout(authedPost('http://localhost/api/stripe/checkout', user.token)));
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'Internal server error' });
      expect(ms).toBeLessThan(BOUND_MS);
    } finally {
      mode = 'ok';
    }
    expect(await sql('select 1 from billing_customers where user_id = $1', [user.id])).toHaveLength(0);
  });

  it('a customer created before Stripe failed is kept and reused, not created again', async () => {
    const user = newUser();
    mode = 'sessions-fail';
    try {
      expect((await checkout(authedPost('http://localhost/api/stripe/checkout', user.token))).status).toBe(500);
    } finally {
      mode = 'ok';
    }
    const stored = await sql<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [user.id]);
    expect(stored).toHaveLength(1);

    expect((await checkout(authedPost('http://localhost/api/stripe/checkout', user.token))).status).toBe(200);
    const creates = await stripeRequests((r) => r.path === '/v1/customers' && r.params['metadata[userId]'] === user.id);
    expect(creates).toHaveLength(1);
    const sessions = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
    expect(sessions.at(-1)?.params['customer']).toBe(stored[0]?.stripe_customer_id);
  });

  it('Stripe down for the portal: 500 within the bound', async () => {
    const user = newUser();
    await sql('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [user.id, `cus_${user.id.slice(0, 8)}`]);
    await sql("insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status) values ($1, $2, $3, 'active')", [
      `sub_${user.id}`,
      `cus_${user.id.slice(0, 8)}`,
      user.id,
    ]);
    mode = '5xx';
    try {
      const { value: response, ms } = await timed(() => portal(authedPost('http://localhost/api/stripe/portal', user.token)));
      expect(response.status).toBe(500);
      expect(ms).toBeLessThan(BOUND_MS);
    } finally {
      mode = 'ok';
    }
  });
});
