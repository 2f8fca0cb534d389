// Limits and usage, decided by the database (supabase/migrations/20261204600000_limits_and_usage.sql,
// docs/usage.md). The catalog's limits are database-wide (a declared key gives every
// subject without access 0 of it), so this file runs against a stack of its own: the
// other files' teams and catalogs never meet its keys.

import { randomUUID } from 'node:crypto';
import { readFile, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import plansEndpoint from '../netlify/functions/stripe-plans.mts';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { CatalogError, parseCatalog } from '../src/catalog/catalog.ts';
import { storedCatalog } from '../src/setup/setup.ts';
import { CATALOG_FILE } from './support/catalog.ts';
import { newUser, shutdownTolerantPool, withEnv } from './support/stack.ts';

let own: ThrowawayStack;
let pool: pg.Pool;

beforeAll(async () => {
  own = await startThrowawayStack('usage', { ownDatabase: true });
  expect(own.env['DATABASE_URL']).not.toBe(process.env['DATABASE_URL']);
  pool = shutdownTolerantPool(own.env['DATABASE_URL'] ?? '');
  await sync(CATALOG);
  await q(`create table public.sites (id uuid primary key default gen_random_uuid(), team_id uuid, name text not null default 'site')`);
  await q(`select billing_attach_limit('public.sites', 'sites', 'team_id')`);
  // As a product would let members add their teams' sites.
  await q('alter table public.sites enable row level security');
  await q('grant select, insert, delete on public.sites to authenticated');
  await q(`create policy "members write their teams' sites" on public.sites for all to authenticated
             using (team_id = any ((select billing_my_team_ids())::uuid[])) with check (team_id = any ((select billing_my_team_ids())::uuid[]))`);
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
  options: { as?: string; at?: string },
  sql: string,
  params: unknown[] = [],
): Promise<Row[]> {
  const client = await pool.connect();
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
    client.release();
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
  free: {
    limits: { sites: 1, members: null },
    usage: { pageviews: { included: 100, overage: 'block' }, events: { included: 100, overage: 'allow', marginPercent: 20, windowsOver: 2, graceDays: 3 } },
  },
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

describe('billing_attach_limit: counts of rows, per statement', () => {
  /** `n` single-row inserts at once, each its own connection and transaction. */
  async function concurrently(n: number, sql: string, params: (i: number) => unknown[]): Promise<PromiseSettledResult<unknown>[]> {
    const clients = await Promise.all(Array.from({ length: n }, async () => {
      const client = new pg.Client({ connectionString: own.env['DATABASE_URL'] });
      await client.connect();
      return client;
    }));
    try {
      return await Promise.allSettled(clients.map((client, i) => client.query(sql, params(i))));
    } finally {
      await Promise.all(clients.map((client) => client.end()));
    }
  }

  it('50 concurrent inserts at a limit of 10 leave exactly 10; the others fail with 23514 and the key, limit and count', async () => {
    const { subject: team } = await subscribed({ price: 'price_usage_growth_m', start: daysFromNow(-3), end: daysFromNow(27) });
    const results = await concurrently(50, 'insert into public.sites (team_id) values ($1)', () => [team]);
    const refused = results.filter((r) => r.status === 'rejected');
    expect(refused).toHaveLength(40);
    for (const r of refused) {
      expect(r.reason).toEqual(expect.objectContaining({ code: '23514', message: 'Plan limit reached: sites', detail: 'key=sites limit=10 count=11' }));
    }
    expect(await q('select count(*)::int as n from public.sites where team_id = $1', [team])).toEqual([{ n: 10 }]);
    expect(await q(`select count::int from billing_limit_counts where subject_id = $1 and key = 'sites'`, [team])).toEqual([{ count: 10 }]);
  }, 60_000);

  it('a member cap of 10 holds under 50 concurrent joins', async () => {
    const { subject: team } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    await q(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [team, randomUUID()]);
    const results = await concurrently(50, `insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'member')`, () => [team, randomUUID()]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(9);
    expect(results.find((r) => r.status === 'rejected')).toEqual(expect.objectContaining({ reason: expect.objectContaining({ code: '23514', message: 'Plan limit reached: members' }) as unknown }));
    expect(await q('select count(*)::int as n from billing_team_members where team_id = $1', [team])).toEqual([{ n: 10 }]);
    // A team without access: the free entry leaves members unlimited.
    const free = randomUUID();
    await q(`insert into billing_team_members (team_id, user_id, role) select $1, gen_random_uuid(), case when g = 1 then 'owner' else 'member' end from generate_series(1, 20) g`, [free]);
  }, 60_000);

  it('counts rows already there, refuses a multi-row statement whole, frees room on delete and on a move, ignores null subjects', async () => {
    const { subject: team } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) }); // starter: 3 sites
    await q('create table public.widgets (id serial primary key, owner uuid)');
    await q('insert into public.widgets (owner) values ($1), ($1), (null), (null)', [team]);
    await sync({ ...CATALOG, plans: CATALOG.plans.map((p) => (p.plan === 'starter' ? { ...p, limits: { ...p.limits, widgets: 3 } } : p)) });
    await q(`select billing_attach_limit('public.widgets', 'widgets', 'owner')`);
    expect(await q(`select subject_id, count::int from billing_limit_counts where key = 'widgets'`)).toEqual([{ subject_id: team, count: 2 }]);

    await expect(q('insert into public.widgets (owner) values ($1), ($1)', [team])).rejects.toEqual(pgError('23514', /Plan limit reached: widgets/));
    await q('insert into public.widgets (owner) select null from generate_series(1, 10)');
    await q('insert into public.widgets (owner) values ($1)', [team]);
    await expect(q('insert into public.widgets (owner) values ($1)', [team])).rejects.toEqual(pgError('23514'));
    // A row moved to another subscriber frees room here.
    const { subject: other } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    await q('update public.widgets set owner = $2 where id = (select min(id) from public.widgets where owner = $1)', [team, other]);
    await q('insert into public.widgets (owner) values ($1)', [team]);
    await q('delete from public.widgets where id = (select min(id) from public.widgets where owner = $1)', [team]);
    await q('insert into public.widgets (owner) values ($1)', [team]);
    expect(await q('select count(*)::int as n from public.widgets where owner = $1', [team])).toEqual([{ n: 3 }]);
    // Free: widgets not in the free entry, so 0 for a subject without access.
    await expect(q('update public.widgets set owner = $1 where owner is null and id = (select min(id) from public.widgets where owner is null)', [randomUUID()]))
      .rejects.toEqual(pgError('23514'));
    await q('truncate public.widgets');
    expect(await q(`select count(*)::int as n from billing_limit_counts where key = 'widgets'`)).toEqual([{ n: 0 }]);
    await q('drop table public.widgets');
    await sync(CATALOG);
  });

  it('an insert row-level security refuses cannot probe another team\'s limit; users cannot write the counts; unknown keys and callers are refused', async () => {
    const { subject: full } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    await q('insert into public.sites (team_id) select $1 from generate_series(1, 3)', [full]);
    const outsider = randomUUID();
    await expect(tx({ as: outsider }, 'insert into public.sites (team_id) values ($1)', [full])).rejects.toEqual(pgError('42501', /row-level security/));
    const member = randomUUID();
    await q(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [full, member]);
    await expect(tx({ as: member }, 'insert into public.sites (team_id) values ($1)', [full])).rejects.toEqual(pgError('23514'));
    await tx({ as: member }, 'delete from public.sites where id = (select min(id::text)::uuid from public.sites where team_id = $1)', [full]);
    await tx({ as: member }, 'insert into public.sites (team_id) values ($1)', [full]);

    await expect(tx({ as: member }, `update billing_limit_counts set count = 0`)).rejects.toEqual(pgError('42501'));
    await expect(tx({ as: 'service_role' }, `update billing_limit_counts set count = 0`)).rejects.toEqual(pgError('42501'));
    await expect(tx({ as: member }, `select billing_attach_limit('public.sites', 'sites', 'team_id')`)).rejects.toEqual(pgError('42501'));
    await expect(q(`select billing_attach_limit('public.sites', 'seats', 'team_id')`)).rejects.toEqual(pgError('22023', /Unknown limit: seats/));
    await expect(q(`select billing_attach_limit('public.sites', 'sites', 'name')`)).rejects.toEqual(pgError('22023'));
    // The service role may attach (and re-attaching recounts).
    await tx({ as: 'service_role' }, `select billing_attach_limit('public.sites', 'sites', 'team_id')`);
    expect(await q(`select count::int from billing_limit_counts where subject_id = $1 and key = 'sites'`, [full])).toEqual([{ count: 3 }]);
  });
});

describe('through PostgREST', () => {
  it('a signed-in member\'s insert past the limit answers 400 with the message and detail', async () => {
    const { subject: team } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) }); // starter: 3 sites
    const { id, token } = await withEnv(own.env, () => Promise.resolve(newUser())); // signed for this stack
    await q(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [team, id]);
    await q('insert into public.sites (team_id) select $1 from generate_series(1, 3)', [team]);
    await q(`notify pgrst, 'reload schema'`); // public.sites is newer than PostgREST's schema cache
    const insert = () => fetch(`${own.env['SUPABASE_URL']}/rest/v1/sites`, {
      method: 'POST',
      headers: { apikey: token, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ team_id: team }),
    });
    let response = await insert();
    for (let tries = 0; response.status === 404 && tries < 50; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      response = await insert();
    }
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ code: '23514', message: 'Plan limit reached: sites', details: 'key=sites limit=3 count=4' });
  });
});

describe('billing_track and billing_usage', () => {
  it('counts a repeated key once, also when the repeats arrive together, and keeps keys 48 hours', async () => {
    const { subject } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    expect(await track(subject, 'pageviews', 10, 'k1')).toEqual({ allowed: true, used: 10, limit: 1000, duplicate: false });
    expect(await track(subject, 'pageviews', 10, 'k1')).toEqual({ allowed: true, used: 10, limit: 1000, duplicate: true });
    const results = await Promise.all(Array.from({ length: 20 }, () => track(subject, 'pageviews', 5, 'k2')));
    expect(results.filter((r) => !r.duplicate)).toHaveLength(1);
    expect(results.every((r) => r.used === 15)).toBe(true);
    // Distinct keys at once all count.
    await Promise.all(Array.from({ length: 20 }, (_, i) => track(subject, 'pageviews', 1, `d${i}`)));
    expect(await usage(subject, 'pageviews')).toBe(35);
    // The key is still known 47 hours on, and forgotten after 48.
    expect((await track(subject, 'pageviews', 5, 'k2', undefined, daysFromNow(47 / 24))).duplicate).toBe(true);
    expect(await track(subject, 'pageviews', 5, 'k2', undefined, daysFromNow(49 / 24))).toEqual({ allowed: true, used: 40, limit: 1000, duplicate: false });
    // The hourly totals: the first calls' hour 35, and the hour 49 hours on 5.
    const hours = await q<{ hour: Date; amount: number }>('select hour, amount::int from billing_usage_hourly where subject_id = $1 order by hour', [subject]);
    expect(hours.map((h) => h.amount)).toEqual([35, 5]);
    expect(((hours[1]?.hour.getTime() ?? 0) - (hours[0]?.hour.getTime() ?? 0)) / 3_600_000).toBeOneOf([49, 50]);
  }, 60_000);

  it('block refuses an amount that would pass the included amount whole, leaving no trace; allow records it', async () => {
    const { subject, subscription } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    expect(await track(subject, 'pageviews', 900, 'a')).toMatchObject({ allowed: true, used: 900 });
    expect(await one({ as: 'service_role' }, 'select billing_usage_state($1, $2) as v', [subject, 'pageviews'])).toBe('warning');
    expect(await track(subject, 'pageviews', 101, 'b')).toEqual({ allowed: false, used: 900, limit: 1000, duplicate: false });
    expect(await usage(subject, 'pageviews')).toBe(900);
    expect(await q('select key from billing_usage_keys where subject_id = $1 order by key', [subject])).toEqual([{ key: 'a' }]);
    expect(await track(subject, 'pageviews', 100, 'c')).toMatchObject({ allowed: true, used: 1000 });

    expect(await track(subject, 'events', 150, 'e')).toEqual({ allowed: true, used: 150, limit: 100, duplicate: false });
    expect(await one({ as: 'service_role' }, 'select billing_usage_state($1, $2) as v', [subject, 'events'])).toBe('over');

    // A plan change mid-window keeps what was used and applies the new limit at once:
    // the refused key now counts.
    await changePlan(subscription, 'price_usage_growth_m');
    expect(await usage(subject, 'pageviews')).toBe(1000);
    expect(await track(subject, 'pageviews', 101, 'b')).toEqual({ allowed: true, used: 1101, limit: 5000, duplicate: false });
    // Growth has no events meter: unlimited there.
    expect(await track(subject, 'events', 1, 'e2')).toEqual({ allowed: true, used: 151, limit: null, duplicate: false });
    expect(await one({ as: 'service_role' }, 'select billing_usage_state($1, $2) as v', [subject, 'events'])).toBe('ok');
    await changePlan(subscription, 'price_usage_starter_m');
    expect(await one({ as: 'service_role' }, 'select billing_usage_state($1, $2) as v', [subject, 'pageviews'])).toBe('over');
    expect(await track(subject, 'pageviews', 1, 'f')).toMatchObject({ allowed: false, used: 1101 });
    expect(await track(subject, 'pageviews', 0, 'g')).toMatchObject({ allowed: true, used: 1101 });
  });

  it('concurrent calls cannot pass a blocking limit; a repeat of a refused key arriving with it is refused too, and nothing of them is kept', async () => {
    const { subject } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    // Starter's pageviews: 1000 included, block. 30 keys of 50 at once: exactly 20 fit.
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => track(subject, 'pageviews', 50, `c${i}`)));
    expect(results.filter((r) => r.allowed)).toHaveLength(20);
    expect(results.filter((r) => !r.allowed).every((r) => r.used === 1000 && !r.duplicate)).toBe(true);
    expect(new Set(results.filter((r) => r.allowed).map((r) => r.used)).size).toBe(20);
    expect(await usage(subject, 'pageviews')).toBe(1000);
    expect(await q('select count(*)::int as n, sum(amount)::int as amount from billing_usage_hourly where subject_id = $1', [subject])).toEqual([{ n: 1, amount: 1000 }]);
    const refused = await Promise.all(Array.from({ length: 5 }, () => track(subject, 'pageviews', 1, 'late')));
    expect(refused).toEqual(Array.from({ length: 5 }, () => ({ allowed: false, used: 1000, limit: 1000, duplicate: false })));
    expect(await q('select count(*)::int as n from billing_usage_keys where subject_id = $1', [subject])).toEqual([{ n: 20 }]);
  }, 60_000);

  it('refuses p_at more than 35 days old or 5 minutes ahead, unknown meters and bad amounts', async () => {
    const { subject } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    const at = (ms: number) => new Date(new Date(NOW).getTime() + ms).toISOString();
    await expect(track(subject, 'pageviews', 1, 'x', at(-35 * 86_400_000 - 60_000), NOW)).rejects.toEqual(pgError('22023'));
    await expect(track(subject, 'pageviews', 1, 'x', at(6 * 60_000), NOW)).rejects.toEqual(pgError('22023'));
    expect(await track(subject, 'pageviews', 1, 'y', at(4 * 60_000), NOW)).toMatchObject({ allowed: true });
    // 34 days ago lies in an earlier window: counted there, not now.
    expect(await track(subject, 'pageviews', 7, 'z', at(-34 * 86_400_000), NOW)).toMatchObject({ allowed: true, used: 7 });
    expect(await usage(subject, 'pageviews', NOW)).toBe(1);
    await expect(track(subject, 'clicks', 1, 'w')).rejects.toEqual(pgError('22023', /Unknown meter: clicks/));
    await expect(track(subject, 'pageviews', -1, 'w')).rejects.toEqual(pgError('22023'));
    await expect(usage(subject, 'clicks')).rejects.toEqual(pgError('22023'));
  });

  it('answers service_role about anyone; a member about their team; an outsider gets the free answer; only service_role tracks', async () => {
    const { subject: team } = await subscribed({ start: daysFromNow(-3), end: daysFromNow(27) });
    const member = randomUUID();
    const outsider = randomUUID();
    await q(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [team, member]);
    await track(team, 'pageviews', 1000, 'all');
    const read = (as: string) => tx<{ used: string; state: string }>({ as }, `select billing_usage($1, 'pageviews') as used, billing_usage_state($1, 'pageviews') as state`, [team]);
    expect(await read('service_role')).toEqual([{ used: '1000', state: 'warning' }]);
    expect(await read(member)).toEqual([{ used: '1000', state: 'warning' }]);
    expect(await read(outsider)).toEqual([{ used: '0', state: 'ok' }]);
    await expect(tx({ as: member }, `select billing_track($1, 'pageviews', 1, 'm')`, [team])).rejects.toEqual(pgError('42501'));
    await expect(tx({ as: member }, 'select * from billing_usage_windows')).rejects.toEqual(pgError('42501'));
  });
});

describe('billing_usage_fold: the hourly totals and the upkeep, off billing_track', () => {
  const fold = (now: string) => one<{ keys_folded: number; hours_removed: number; windows_removed: number }>({ at: now }, 'select billing_usage_fold() as v');
  const hourly = (subject: string) =>
    q<{ hour: Date; amount: number }>('select hour, amount::int from billing_usage_hourly where subject_id = $1 order by hour', [subject])
      .then((rows) => rows.map((r) => [r.hour.toISOString(), r.amount]));

  it('moves keys older than 48 hours into the hours (billing_usage_hourly unchanged), then a repeat of one counts anew; hours go after 35 days', async () => {
    const subject = randomUUID();
    await track(subject, 'events', 3, 'a', undefined, '2027-03-01T10:15:00Z');
    await track(subject, 'events', 4, 'b', undefined, '2027-03-01T10:45:00Z');
    await track(subject, 'events', 5, 'c', undefined, '2027-03-02T09:00:00Z');
    const before = [['2027-03-01T10:00:00.000Z', 7], ['2027-03-02T09:00:00.000Z', 5]];
    expect(await hourly(subject)).toEqual(before);

    await fold('2027-03-03T10:00:00Z');
    expect(await q('select key from billing_usage_keys where subject_id = $1 order by key', [subject])).toEqual([{ key: 'a' }, { key: 'b' }, { key: 'c' }]);
    expect((await fold('2027-03-03T11:00:00Z')).keys_folded).toBeGreaterThanOrEqual(2);
    expect(await q('select key from billing_usage_keys where subject_id = $1', [subject])).toEqual([{ key: 'c' }]);
    expect(await q('select hour, amount::int from billing_usage_hours where subject_id = $1', [subject]))
      .toEqual([{ hour: new Date('2027-03-01T10:00:00Z'), amount: 7 }]);
    expect(await hourly(subject)).toEqual(before);
    expect(await usage(subject, 'events', '2027-03-03T11:00:00Z')).toBe(12);

    // Folded, so no longer a duplicate: it counts again, in this hour.
    expect(await track(subject, 'events', 3, 'a', undefined, '2027-03-03T11:00:00Z')).toEqual({ allowed: true, used: 15, limit: 100, duplicate: false });
    expect(await hourly(subject)).toEqual([...before, ['2027-03-03T11:00:00.000Z', 3]]);

    // 35 days and an hour after the last hour, nothing is left of them.
    await fold('2027-04-07T12:00:00Z');
    expect(await hourly(subject)).toEqual([['2027-03-03T11:00:00.000Z', 3]]);
    await fold('2027-04-07T12:00:01Z');
    expect(await hourly(subject)).toEqual([]);
    expect(await q('select key from billing_usage_keys where subject_id = $1', [subject])).toEqual([]);
  });

  it('an expired key not folded yet counts anew, and its first amount stays in its hour', async () => {
    const subject = randomUUID();
    await track(subject, 'events', 2, 'k', undefined, '2027-03-01T10:00:00Z');
    expect((await track(subject, 'events', 2, 'k', undefined, '2027-03-03T09:59:59Z')).duplicate).toBe(true);
    expect(await track(subject, 'events', 2, 'k', undefined, '2027-03-03T10:00:01Z')).toEqual({ allowed: true, used: 4, limit: 100, duplicate: false });
    expect(await hourly(subject)).toEqual([['2027-03-01T10:00:00.000Z', 2], ['2027-03-03T10:00:00.000Z', 2]]);
    expect((await track(subject, 'events', 2, 'k', undefined, '2027-03-03T10:00:02Z')).duplicate).toBe(true);
  });

  it('removes only windows no state can read: those before a final window the grace rule stops at', async () => {
    // Free events: 100 included, a 20% margin, 2 windows in a row, 3 days of grace.
    const subject = randomUUID();
    for (const month of ['01', '03', '04', '05']) await track(subject, 'events', 130, `w${month}`, undefined, `2027-${month}-10T00:00:00Z`);
    const status = () => tx<{ state: string; grace_ends_at: Date }>({ at: '2027-06-10T00:00:00Z' }, `select * from billing_usage_status($1, 'events')`, [subject]);
    const windows = () => q<{ window_start: Date }>('select window_start from billing_usage_windows where subject_id = $1 order by 1', [subject])
      .then((rows) => rows.map((r) => r.window_start.toISOString().slice(0, 7)));
    const locked = [{ state: 'locked', included: '100', grace_ends_at: new Date('2027-05-04T00:00:00Z'), overage: null }];
    expect(await status()).toEqual(locked);
    // By 10 June, January to April are final (p_at is at most 35 days old). February has
    // no window, so the walk back from June stops at March: January goes.
    await fold('2027-06-10T00:00:00Z');
    expect(await windows()).toEqual(['2027-03', '2027-04', '2027-05']);
    expect(await status()).toEqual(locked);
  });
});

describe('billing_usage_state: grace and lock', () => {
  const state = (subject: string, at: string) => one<string>({ at }, `select billing_usage_state($1, 'events') as v`, [subject]);
  // Free events: 100 included, a margin of 20%, 2 windows in a row, 3 days of grace;
  // calendar months without a subscription.
  const use = (subject: string, amount: number, at: string) => track(subject, 'events', amount, `${at}:${amount}`, undefined, at);

  it('two windows in a row above the margin start grace when the second ends, then a lock until a window ends within the limit', async () => {
    const subject = randomUUID();
    await use(subject, 130, '2027-01-10T00:00:00Z');
    await use(subject, 121, '2027-02-10T00:00:00Z');
    expect(await state(subject, '2027-02-20T00:00:00Z')).toBe('over');
    expect(await state(subject, '2027-03-01T00:00:00Z')).toBe('grace');
    expect(await state(subject, '2027-03-03T23:59:00Z')).toBe('grace');
    expect(await state(subject, '2027-03-04T00:00:00Z')).toBe('locked');
    // March above the limit but within the margin: still locked in April.
    await use(subject, 105, '2027-03-10T00:00:00Z');
    expect(await state(subject, '2027-04-02T00:00:00Z')).toBe('locked');
    // April within the limit: unlocked when it ends.
    await use(subject, 95, '2027-04-10T00:00:00Z');
    expect(await state(subject, '2027-04-30T00:00:00Z')).toBe('locked');
    expect(await state(subject, '2027-05-01T00:00:00Z')).toBe('ok');
  });

  it('one window above the margin, or a window without use between two, starts nothing; a plan that grows lifts the lock', async () => {
    const subject = randomUUID();
    await use(subject, 130, '2027-01-10T00:00:00Z');
    await use(subject, 130, '2027-03-10T00:00:00Z');
    expect(await state(subject, '2027-04-01T00:00:00Z')).toBe('ok');
    await use(subject, 130, '2027-04-10T00:00:00Z');
    expect(await state(subject, '2027-04-10T00:00:00Z')).toBe('over');
    expect(await state(subject, '2027-05-10T00:00:00Z')).toBe('locked');
    // An outsider gets the free answer: nothing used.
    expect(await one({ as: randomUUID(), at: '2027-05-10T00:00:00Z' }, `select billing_usage_state($1, 'events') as v`, [subject])).toBe('ok');

    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`select set_config('billing.now', '2027-05-10T00:00:00Z', true)`);
      const grown = { ...CATALOG, free: { ...CATALOG.free, usage: { ...CATALOG.free.usage, events: { ...CATALOG.free.usage.events, included: 120 } } } };
      await client.query('select billing_sync_catalog($1)', [JSON.stringify(grown)]);
      expect((await client.query(`select billing_usage_state($1, 'events') as v`, [subject])).rows).toEqual([{ v: 'ok' }]);
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});

describe('usage windows', () => {
  const window = (subject: string, at: string) =>
    q<{ window_start: Date; window_end: Date }>('select * from billing_usage_window($1, $2)', [subject, at]).then(([w]) => [w?.window_start.toISOString(), w?.window_end.toISOString()]);

  it('a monthly subscription: its billing period; past its recorded end, months on from its start; a renewal moves on', async () => {
    const { subject, subscription } = await subscribed({ start: '2027-01-15T09:00:00Z', end: '2027-02-15T09:00:00Z' });
    expect(await window(subject, '2027-01-20T00:00:00Z')).toEqual(['2027-01-15T09:00:00.000Z', '2027-02-15T09:00:00.000Z']);
    expect(await track(subject, 'pageviews', 10, 'jan', undefined, '2027-01-20T00:00:00Z')).toMatchObject({ used: 10 });
    expect(await usage(subject, 'pageviews', '2027-02-15T08:59:00Z')).toBe(10);
    // The renewal's event not in yet: the next month already counts apart.
    expect(await usage(subject, 'pageviews', '2027-02-15T09:00:00Z')).toBe(0);
    await q(`update billing_subscriptions set current_period_start = '2027-02-15T09:00:00Z', current_period_end = '2027-03-15T09:00:00Z' where stripe_subscription_id = $1`, [subscription]);
    expect(await track(subject, 'pageviews', 3, 'feb', undefined, '2027-02-16T00:00:00Z')).toMatchObject({ used: 3 });
    // A late report for January lands in January's window.
    expect(await track(subject, 'pageviews', 5, 'late', '2027-02-15T08:00:00Z', '2027-02-16T00:00:00Z')).toMatchObject({ used: 15 });
    expect(await usage(subject, 'pageviews', '2027-02-16T00:00:00Z')).toBe(3);
  });

  it('an annual subscription resets monthly, anchored on its start day (31 Jan, 28 Feb, 31 Mar)', async () => {
    const { subject } = await subscribed({ price: 'price_usage_starter_y', start: '2027-01-31T10:00:00Z', end: '2028-01-31T10:00:00Z' });
    expect(await window(subject, '2027-02-01T00:00:00Z')).toEqual(['2027-01-31T10:00:00.000Z', '2027-02-28T10:00:00.000Z']);
    expect(await window(subject, '2027-03-01T00:00:00Z')).toEqual(['2027-02-28T10:00:00.000Z', '2027-03-31T10:00:00.000Z']);
    expect(await window(subject, '2027-12-31T10:00:00Z')).toEqual(['2027-12-31T10:00:00.000Z', '2028-01-31T10:00:00.000Z']);
    await track(subject, 'pageviews', 5, 'a', undefined, '2027-02-28T09:00:00Z');
    expect(await usage(subject, 'pageviews', '2027-02-28T09:59:00Z')).toBe(5);
    expect(await usage(subject, 'pageviews', '2027-02-28T10:00:00Z')).toBe(0);
  });

  it('without a subscription: calendar months in UTC', async () => {
    const nobody = randomUUID();
    expect(await window(nobody, '2027-03-31T23:30:00-05:00')).toEqual(['2027-04-01T00:00:00.000Z', '2027-05-01T00:00:00.000Z']);
    expect(await track(nobody, 'pageviews', 60, 'a', undefined, '2027-03-31T23:00:00Z')).toMatchObject({ allowed: true, used: 60, limit: 100 });
    expect(await track(nobody, 'pageviews', 60, 'b', undefined, '2027-03-31T23:59:00Z')).toMatchObject({ allowed: false, used: 60 });
    expect(await track(nobody, 'pageviews', 60, 'b', undefined, '2027-04-01T00:00:00Z')).toMatchObject({ allowed: true, used: 60 });
  });
});

describe('the catalog: limits, meters, trial limits and free, through billing:setup to the database and /plans', () => {
  const USAGE_KEYS = {
    limits: { projects: 5, members: null },
    usage: { pageviews: { included: 100000, overage: 'block', graceDays: 14 } },
  };

  async function shippedWith(edit: (catalog: Record<string, unknown> & { plans: Record<string, Record<string, unknown>> }) => void): Promise<unknown> {
    const catalog = JSON.parse(await readFile(CATALOG_FILE, 'utf8')) as Record<string, unknown> & { plans: Record<string, Record<string, unknown>> };
    edit(catalog);
    return catalog;
  }

  it('billing:setup of two sites on one database at once: concurrent billing_sync_catalog calls all succeed', async () => {
    // Two catalogs with plans of their own and one free entry: each call replaces the
    // free entry's rows, which a concurrent call is replacing too.
    const other = { ...CATALOG, plans: [{ ...CATALOG.plans[1], plan: 'race', product_id: 'prod_usage_race' }], prices: [] };
    try {
      const rounds = await Promise.all(Array.from({ length: 5 }, () => Promise.allSettled([sync(CATALOG), sync(other), sync(CATALOG), sync(other)])));
      expect(rounds.flat().filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => String(r.reason))).toEqual([]);
      expect(await q('select key, value::int from billing_plan_limits where plan is null and kind = $1 order by key', ['limit'])).toEqual([
        { key: 'members', value: null },
        { key: 'sites', value: 1 },
      ]);
    } finally {
      await q("delete from billing_plans where plan = 'race'");
      await sync(CATALOG);
    }
  });

  it('parses them, refuses what is not a limit or a meter, and stores them as billing_sync_catalog expects', async () => {
    const raw = await shippedWith((c) => {
      Object.assign(c.plans['pro'] ?? {}, USAGE_KEYS, { trial: { days: 14, cardRequired: false, limits: { projects: 1 } } });
      c['free'] = { limits: { projects: 1 }, usage: { pageviews: { included: 1000, overage: 'allow' } } };
    });
    const catalog = parseCatalog(raw, 'test');
    expect(catalog.plans[0]).toMatchObject({ ...USAGE_KEYS, trial: { limits: { projects: 1 } } });
    expect(catalog.plans[1]).toMatchObject({ limits: {}, usage: {} });
    const stored = storedCatalog(catalog, new Map([['pro_monthly', 'price_usage_pro_m']]));
    expect(stored.free).toEqual({ limits: { projects: 1 }, usage: { pageviews: { included: 1000, overage: 'allow' } } });
    expect(stored.plans[0]).toMatchObject({ plan: 'pro', ...USAGE_KEYS, trial_limits: { projects: 1 } });

    // What the database makes of it (rolled back: the file's own catalog stays).
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query('select billing_sync_catalog($1)', [JSON.stringify(stored)]);
      const { rows } = await client.query(`select plan, trial, kind, key, value::int, overage, grace_days from billing_plan_limits where plan = 'pro' or plan is null order by plan nulls first, trial, kind, key`);
      expect(rows).toEqual([
        { plan: null, trial: false, kind: 'limit', key: 'projects', value: 1, overage: null, grace_days: null },
        { plan: null, trial: false, kind: 'meter', key: 'pageviews', value: 1000, overage: 'allow', grace_days: null },
        { plan: 'pro', trial: false, kind: 'limit', key: 'members', value: null, overage: null, grace_days: null },
        { plan: 'pro', trial: false, kind: 'limit', key: 'projects', value: 5, overage: null, grace_days: null },
        { plan: 'pro', trial: false, kind: 'meter', key: 'pageviews', value: 100000, overage: 'block', grace_days: 14 },
        { plan: 'pro', trial: true, kind: 'limit', key: 'projects', value: 1, overage: null, grace_days: null },
      ]);
    } finally {
      await client.query('rollback');
      client.release();
    }

    const bad = await shippedWith((c) => {
      Object.assign(c.plans['pro'] ?? {}, { limits: { Sites: 1, members: -1 }, usage: { pageviews: { included: 10, overage: 'charge', windowsOver: 0 } } });
      c['free'] = { limits: { projects: 'many' } };
    });
    let error: unknown;
    try {
      parseCatalog(bad, 'test');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(CatalogError);
    expect((error as CatalogError).problems).toEqual([
      'plans.pro.limits.Sites is not a key (lowercase letters, digits, _; 40 at most)',
      'plans.pro.limits.members must be a whole number of 0 or more, or null (unlimited)',
      'plans.pro.usage.pageviews.overage must be one of block, allow, bill',
      'plans.pro.usage.pageviews.windowsOver must be a whole number of 1 or more',
      'free.limits.projects must be a whole number of 0 or more, or null (unlimited)',
    ]);
  });

  it('GET /api/stripe/plans shows each plan\'s limits, meters and trial limits, and the free entry', async () => {
    // The shipped catalog's products and lookup keys (in Stripe since the run's setup),
    // with limits: /plans reads the file and Stripe, not the database.
    const raw = await shippedWith((c) => {
      Object.assign(c.plans['business'] ?? {}, USAGE_KEYS);
      c['free'] = { limits: { projects: 1 }, usage: {} };
    });
    const file = path.join(await mkdtemp(path.join(tmpdir(), 'catalog-')), 'catalog.json');
    await writeFile(file, JSON.stringify(raw));
    const response = await withEnv({ BILLING_CATALOG: file }, () => plansEndpoint(new Request('http://localhost/api/stripe/plans')));
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({
      free: { limits: { projects: 1 }, usage: {} },
      plans: [
        { key: 'pro', limits: {}, usage: {}, trial: { days: 14, limits: {} } },
        { key: 'business', ...USAGE_KEYS },
      ],
    });
  });
});

describe('docs/usage.md', () => {
  it('runs its worked example as written', async () => {
    const text = await readFile(path.resolve(import.meta.dirname, '../docs/usage.md'), 'utf8');
    const catalogSnippet = /```json\n([\s\S]*?)```/.exec(text)?.[1] ?? '';
    const example = /## Worked example[\s\S]*?```sql\n([\s\S]*?)```/.exec(text)?.[1] ?? '';
    // The snippet's plan and free entry, on the shipped catalog.
    const snippet = JSON.parse(`{${catalogSnippet}}`) as { plans: { team: Record<string, unknown> }; free: unknown };
    const raw = JSON.parse(await readFile(CATALOG_FILE, 'utf8')) as { plans: Record<string, Record<string, unknown>>; free?: unknown };
    Object.assign(raw.plans['pro'] ?? {}, snippet.plans.team);
    raw.free = snippet.free;
    const stored = storedCatalog(parseCatalog(raw, 'docs/usage.md'), new Map());

    // Statements, each with what follows it: "-- → value" or "-- ERROR code: message".
    const steps: { sql: string; expect?: string }[] = [];
    let statement = '';
    for (const line of example.split('\n')) {
      if (line.startsWith('-- ')) {
        const last = steps.at(-1);
        if (last) last.expect = line.slice(3);
        continue;
      }
      statement += `${line}\n`;
      if (line.trimEnd().endsWith(';')) {
        steps.push({ sql: statement });
        statement = '';
      }
    }
    expect(steps.filter((s) => s.expect)).toHaveLength(8);

    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query('select billing_sync_catalog($1)', [JSON.stringify(stored)]);
      for (const step of steps) {
        await client.query('savepoint step');
        const outcome = await client.query<Record<string, unknown>>(step.sql).then(
          (result) => {
            const value = result.rows[0] && Object.values(result.rows[0])[0];
            return { value };
          },
          (error: Error & { code?: string }) => ({ error: `ERROR ${error.code}: ${error.message}` }),
        );
        if ('error' in outcome) {
          await client.query('rollback to savepoint step');
          expect([step.sql, outcome.error]).toEqual([step.sql, step.expect]);
        } else if (step.expect?.startsWith('→ ')) {
          const expected = step.expect.slice(2);
          const actual = typeof outcome.value === 'object' && outcome.value !== null ? outcome.value : String(outcome.value);
          expect([step.sql, actual]).toEqual([step.sql, typeof actual === 'string' ? expected : JSON.parse(expected)]);
        } else {
          expect([step.sql, step.expect]).toEqual([step.sql, undefined]);
        }
      }
    } finally {
      await client.query('rollback');
      client.release();
    }
  });
});
