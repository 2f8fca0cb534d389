// Limits and usage, decided by the database (supabase/migrations/20261204600000_limits_and_usage.sql,
// docs/usage.md). The catalog's limits are database-wide (a declared key gives every
// subject without access 0 of it), so this file runs against a stack of its own: the
// other files' teams and catalogs never meet its keys.

import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { parseCatalog } from '../src/billing/catalog.ts';
import { storedCatalog } from '../src/billing/setup.ts';

let own: ThrowawayStack;
let pool: pg.Pool;

beforeAll(async () => {
  own = await startThrowawayStack('usage', { ownDatabase: true });
  expect(own.env['DATABASE_URL']).not.toBe(process.env['DATABASE_URL']);
  pool = new pg.Pool({ connectionString: own.env['DATABASE_URL'], max: 4 });
  await sync(CATALOG);
  await q(`create table public.sites (id uuid primary key default gen_random_uuid(), team_id uuid, name text not null default 'site')`);
  await q(`select billing_attach_limit('public.sites', 'sites', 'team_id')`);
});

afterAll(async () => {
  await pool?.end();
  await own?.stop();
});

async function q<Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await pool.query<Row>(sql, params)).rows;
}

/** One transaction on one connection: as `as` (a signed-in user's id, or the service
 *  role), at the time `at` (billing.now, local to the transaction). */
async function tx<Row extends pg.QueryResultRow>(
  options: { as?: string | 'service_role'; at?: string; client?: pg.ClientBase },
  sql: string,
  params: unknown[] = [],
): Promise<Row[]> {
  const client = options.client ?? (await pool.connect());
  try {
    await client.query('begin');
    if (options.at) await client.query(`select set_config('billing.now', $1, true)`, [options.at]);
    if (options.as === 'service_role') await client.query('set local role service_role');
    else if (options.as) {
      await client.query(`select set_config('request.jwt.claims', $1, true)`, [JSON.stringify({ sub: options.as, role: 'authenticated' })]);
      await client.query('set local role authenticated');
    }
    const result = await client.query<Row>(sql, params);
    await client.query('commit');
    return result.rows;
  } catch (error) {
    await client.query('rollback');
    throw error;
  } finally {
    if (!options.client) (client as pg.PoolClient).release();
  }
}

async function one<T>(options: Parameters<typeof tx>[0], sql: string, params: unknown[] = []): Promise<T> {
  const [row] = await tx<{ v: T }>(options, sql, params);
  return (row as { v: T }).v;
}

const pgError = (code: string, message?: RegExp) => expect.objectContaining({ code, ...(message && { message: expect.stringMatching(message) as unknown }) }) as unknown;

const CATALOG = {
  plans: [
    {
      plan: 'starter', product_id: 'prod_usage_starter', name: 'Starter', features: [],
      limits: { sites: 3, members: 10 }, trial_limits: { sites: 1 },
      usage: { pageviews: { included: 1000, overage: 'block' }, events: { included: 100, overage: 'allow' } },
    },
    { plan: 'growth', product_id: 'prod_usage_growth', name: 'Growth', features: [], limits: { sites: 10 }, usage: { pageviews: { included: 5000, overage: 'block' } } },
  ],
  prices: [
    { price_id: 'price_usage_starter_m', plan: 'starter', lookup_key: 'usage_starter_m', interval: 'month', amount: 900, currency: 'eur' },
    { price_id: 'price_usage_starter_y', plan: 'starter', lookup_key: 'usage_starter_y', interval: 'year', amount: 9000, currency: 'eur' },
    { price_id: 'price_usage_growth_m', plan: 'growth', lookup_key: 'usage_growth_m', interval: 'month', amount: 2900, currency: 'eur' },
  ],
  free: { limits: { sites: 1, members: null }, usage: { pageviews: { included: 100, overage: 'block' } } },
};

async function sync(catalog: unknown): Promise<void> {
  await q('select billing_sync_catalog($1)', [JSON.stringify(catalog)]);
}

interface Subscription {
  status?: string;
  price?: string;
  start: string;
  end: string;
}

/** A subject (a team unless `user`) subscribed as given; returns its id and the
 *  subscription's id, for a later change. */
async function subscribed(sub: Subscription, subject: string = randomUUID()): Promise<{ subject: string; subscription: string }> {
  const customer = `cus_${randomUUID().slice(0, 12)}`;
  const subscription = `sub_${randomUUID().slice(0, 12)}`;
  const price = sub.price ?? 'price_usage_starter_m';
  await q('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [subject, customer]);
  await q(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
       cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
     select $1, $2, $3, $4, p.stripe_price_id, pl.stripe_product_id, true, false, $5, $6, now(), now(), 'evt_usage'
     from billing_prices p join billing_plans pl using (plan) where p.stripe_price_id = $7`,
    [subscription, customer, subject, sub.status ?? 'active', sub.start, sub.end, price],
  );
  return { subject, subscription };
}

async function changePlan(subscription: string, price: string): Promise<void> {
  await q(
    `update billing_subscriptions s set price_id = p.stripe_price_id, product_id = pl.stripe_product_id
     from billing_prices p join billing_plans pl using (plan) where p.stripe_price_id = $2 and s.stripe_subscription_id = $1`,
    [subscription, price],
  );
}

const track = (subject: string, meter: string, amount: number, key: string, at?: string, now?: string) =>
  one<{ allowed: boolean; used: number; limit: number | null; duplicate: boolean }>(
    { as: 'service_role', ...(now && { at: now }) },
    at ? 'select billing_track($1, $2, $3, $4, $5) as v' : 'select billing_track($1, $2, $3, $4) as v',
    at ? [subject, meter, amount, key, at] : [subject, meter, amount, key],
  );

const usage = (subject: string, meter: string, now?: string) =>
  one<string>({ ...(now && { at: now }) }, 'select billing_usage($1, $2) as v', [subject, meter]).then(Number);

const NOW = new Date().toISOString();
const daysFromNow = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString();

describe('billing_limit: the plan, its trial, the free entry', () => {
  it('answers the plan with access, the trial while trialing, free without access, and 0 of a key free omits when free is missing', async () => {
    const active = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    const trialing = await subscribed({ status: 'trialing', start: daysFromNow(-3), end: daysFromNow(11) });
    const canceled = await subscribed({ status: 'canceled', start: daysFromNow(-40), end: daysFromNow(-10) });
    const nobody = randomUUID();
    const limit = (subject: string, key: string) => one<string | null>({}, 'select billing_limit($1, $2) as v', [subject, key]);

    expect([await limit(active.subject, 'sites'), await limit(active.subject, 'members')]).toEqual(['3', '10']);
    // The trial's own sites; members from the plan.
    expect([await limit(trialing.subject, 'sites'), await limit(trialing.subject, 'members')]).toEqual(['1', '10']);
    for (const subject of [canceled.subject, nobody]) {
      expect([await limit(subject, 'sites'), await limit(subject, 'members')]).toEqual(['1', null]);
    }
    // Growth omits members: unlimited there.
    const growth = await subscribed({ price: 'price_usage_growth_m', start: daysFromNow(-3), end: daysFromNow(27) });
    expect(await limit(growth.subject, 'members')).toBeNull();
    await expect(limit(active.subject, 'seats')).rejects.toEqual(pgError('22023', /Unknown limit: seats/));

    // Without a free entry, a subject without access gets 0 of every declared key
    // (rolled back: the rest of the file uses the free entry).
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query('select billing_sync_catalog($1)', [JSON.stringify({ ...CATALOG, free: undefined })]);
      const rows = await client.query<{ sites: string | null; members: string | null; plan: string | null }>(
        `select billing_limit($1, 'sites') as sites, billing_limit($1, 'members') as members, billing_limit($2, 'sites') as plan`,
        [nobody, active.subject],
      );
      expect(rows.rows).toEqual([{ sites: '0', members: '0', plan: '3' }]);
    } finally {
      await client.query('rollback');
      client.release();
    }
  });

  it('answers the caller and their teams; anyone else gets the free answer', async () => {
    const { subject: team } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    const member = randomUUID();
    const outsider = randomUUID();
    await q(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [team, member]);
    expect(await one({ as: member }, `select billing_limit($1, 'sites') as v`, [team])).toBe('3');
    expect(await one({ as: 'service_role' }, `select billing_limit($1, 'sites') as v`, [team])).toBe('3');
    expect(await one({ as: outsider }, `select billing_limit($1, 'sites') as v`, [team])).toBe('1');
  });
});
