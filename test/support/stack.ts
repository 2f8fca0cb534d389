// What tests need from the local stack: tokens, signed deliveries, database rows and
// the Stripe requests our code sent.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import Stripe from 'stripe';
import { issuerFor, mintAccessToken } from '../../scripts/lib/tokens.ts';
import type { RecordedStripeRequest } from '../../scripts/stack/stripe-mock-bridge.ts';

export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`test environment lacks ${name}`);
  return value;
}

/** A variable's value as .env.example gives it (a placeholder a deploy must refuse). */
export function exampleEnv(name: string): string {
  const text = readFileSync(path.resolve(import.meta.dirname, '../../.env.example'), 'utf8');
  const value = new RegExp(`^${name}=(.*)$`, 'm').exec(text)?.[1];
  if (value === undefined) throw new Error(`.env.example lacks ${name}`);
  return value;
}

export interface TestUser {
  id: string;
  email: string;
  token: string;
}

export function newUser(extraClaims: Record<string, unknown> = {}): TestUser {
  const id = randomUUID();
  const email = `user-${id.slice(0, 8)}@example.com`;
  const token = mintAccessToken({
    sub: id,
    email,
    secret: env('SUPABASE_JWT_SECRET'),
    issuer: issuerFor(env('SUPABASE_URL')),
    extra: extraClaims,
  });
  return { id, email, token };
}

/**
 * A pool on `url`. A database a test stops (its own stack, or a fault test's) tells
 * connections it is shutting down (57P01), also ones the pool has just ended (end()
 * resolves before they have closed): not a failure of the test. Anything else still
 * surfaces, as an uncaught error.
 */
export function shutdownTolerantPool(url: string, max = 4): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max });
  const unlessShutdown = (error: Error) => {
    if ((error as Error & { code?: string }).code !== '57P01') throw error;
  };
  pool.on('error', unlessShutdown);
  pool.on('connect', (client) => client.on('error', unlessShutdown));
  return pool;
}

// One pool per database: a test may point DATABASE_URL at a stack of its own (withEnv).
const pools = new Map<string, pg.Pool>();
export function db(): pg.Pool {
  const url = env('DATABASE_URL');
  let pool = pools.get(url);
  if (!pool) {
    pool = shutdownTolerantPool(url);
    pools.set(url, pool);
  }
  return pool;
}

/** Ends db()'s pool for the current DATABASE_URL: before that database stops, whose
 *  closing would otherwise reach idle connections as an unhandled error. */
export async function closeDb(): Promise<void> {
  const url = env('DATABASE_URL');
  const pool = pools.get(url);
  pools.delete(url);
  await pool?.end();
}

export async function query<Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<Row[]> {
  const result = await db().query<Row>(sql, params);
  return result.rows;
}

/** `sql` as the signed-in user `userId` would run it through PostgREST: role
 *  authenticated, their claims set, row-level security on. */
export async function asUser<T>(userId: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const client = await db().connect();
  try {
    await client.query('begin');
    await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: userId, role: 'authenticated' })]);
    await client.query('set local role authenticated');
    const result = await client.query(sql, params);
    await client.query('commit');
    return result.rows as T[];
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    client.release();
  }
}

// Webhooks ---------------------------------------------------------------------------

type EventFixture = Stripe.Event & { data: { object: Record<string, unknown> } };

export function loadEvent(type: string): EventFixture {
  const file = path.resolve(import.meta.dirname, '../fixtures/events', `${type}.json`);
  return JSON.parse(readFileSync(file, 'utf8')) as EventFixture;
}

/** A copy of a fixture with fresh ids, so tests never collide in the shared database. */
export function freshEvent(type: string, edit: (object: Record<string, unknown>) => void = () => {}): EventFixture {
  const event = structuredClone(loadEvent(type));
  event.id = `evt_test_${randomUUID().replaceAll('-', '')}`;
  edit(event.data.object);
  return event;
}

export function signedDelivery(payload: string, options: { secret?: string; timestamp?: number } = {}): Request {
  const signature = Stripe.webhooks.generateTestHeaderString({
    payload,
    secret: options.secret ?? env('STRIPE_WEBHOOK_SECRET'),
    ...(options.timestamp !== undefined && { timestamp: options.timestamp }),
  });
  return new Request('http://localhost/api/stripe/webhook', {
    method: 'POST',
    headers: { 'stripe-signature': signature, 'content-type': 'application/json' },
    body: payload,
  });
}

// Stripe requests we sent (recorded by the stripe-mock bridge) -----------------------

export async function stripeRequests(filter: (r: RecordedStripeRequest) => boolean): Promise<RecordedStripeRequest[]> {
  const response = await fetch(`${env('STRIPE_API_BASE')}/__bridge/requests`);
  const all = (await response.json()) as RecordedStripeRequest[];
  return all.filter(filter);
}

export function authedPost(url: string, token: string | null, init: RequestInit = {}): Request {
  return new Request(url, {
    method: 'POST',
    ...init,
    headers: {
      'content-type': 'application/json',
      ...(token !== null && { authorization: `Bearer ${token}` }),
      ...(init.headers as Record<string, string> | undefined),
    },
  });
}

export const CORS_EXPECTED = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'POST, OPTIONS',
  'access-control-allow-headers': 'Content-Type, Authorization',
};

export function expectCors(response: Response): void {
  for (const [name, value] of Object.entries(CORS_EXPECTED)) {
    if (response.headers.get(name) !== value) {
      throw new Error(`expected ${name}: ${value}, got ${String(response.headers.get(name))}`);
    }
  }
}

// What Stripe holds, as the bridge serves it (scripts/stack/stripe-mock-bridge.ts) ------

async function bridge(path: string, init: RequestInit): Promise<void> {
  const response = await fetch(`${env('STRIPE_API_BASE')}${path}`, { ...init, headers: { 'content-type': 'application/json' } });
  if (!response.ok) throw new Error(`bridge ${path}: ${response.status}`);
}

const eventLogPath = (key: string | undefined) => `/__bridge/events${key === undefined ? '' : `?key=${encodeURIComponent(key)}`}`;
/** Adds events to Stripe's event log (GET /v1/events, /v1/events/{id}): the shared one, or
 *  the log of `key` (opened with openStripeEventLog). */
export const postStripeEvents = (events: readonly Stripe.Event[], key?: string) => bridge(eventLogPath(key), { method: 'POST', body: JSON.stringify(events) });
export const clearStripeEvents = (key?: string) => bridge(eventLogPath(key), { method: 'DELETE' });
/** The next `times` event reads answer 429. */
export const rateLimitStripeEvents = (times: number) => bridge('/__bridge/rate-limit', { method: 'POST', body: JSON.stringify({ times }) });
/** GET `path` answers `body` (e.g. /v1/checkout/sessions/cs_…). */
export const postStripeObject = (path: string, body: unknown) => bridge('/__bridge/objects', { method: 'POST', body: JSON.stringify({ path, body }) });
/** A list call with these parameters (and any others, such as limit) answers `data`, in
 *  one page: e.g. GET /v1/subscriptions?customer=cus_… for one customer's subscriptions. */
export const postStripeList = (path: string, params: Record<string, string>, data: readonly unknown[]) =>
  postStripeObject(`${path}?${new URLSearchParams(params).toString()}`, { object: 'list', url: path, has_more: false, data });
/** From now on, the events made by requests with this API key (a quantity update's) go to a
 *  log of the key's own, which GET /v1/events with the key reads: not the shared one. */
export const openStripeEventLog = (key: string) => bridge(`/__bridge/events?key=${encodeURIComponent(key)}`, { method: 'POST', body: '[]' });
/** The next quantity updates of the subscription answer these statuses (429, 500), and
 *  every update of it takes delayMs longer. */
export const subscriptionFaults = (id: string, faults: { statuses?: number[]; delayMs?: number }) =>
  bridge(`/__bridge/subscriptions/${id}/faults`, { method: 'POST', body: JSON.stringify(faults) });

export interface BridgeSubscription {
  /** Its first item's quantity, as Stripe holds it now. */
  quantity: number | null;
  /** Updates applied. */
  updates: number;
  inFlight: number;
  /** The most updates of it in flight at once, ever. */
  maxInFlight: number;
}

export async function bridgeSubscription(id: string): Promise<BridgeSubscription> {
  const response = await fetch(`${env('STRIPE_API_BASE')}/__bridge/subscriptions/${id}`);
  if (!response.ok) throw new Error(`bridge subscription ${id}: ${response.status}`);
  return (await response.json()) as BridgeSubscription;
}

/** Runs `run` with these environment variables set (undefined: unset), then puts them back. */
export async function withEnv<T>(changes: Record<string, string | undefined>, run: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(changes).map((name) => [name, process.env[name]]));
  const apply = (values: Record<string, string | undefined>) => {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  };
  apply(changes);
  try {
    return await run();
  } finally {
    apply(saved);
  }
}
