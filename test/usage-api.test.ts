// Limits and usage through the API (docs/usage.md): the status body's `limits` and
// `usage`, read in its one database round trip, and checkout's refusal of a plan whose
// limits the subject already passes. Declared keys apply database-wide, so this file
// runs against a stack of its own, with the shipped catalog plus limits and meters.

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import checkout from '../netlify/functions/stripe-checkout.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import { pushCatalog } from '../scripts/lib/local-catalog.ts';
import { USAGE_STATES } from '../src/usage/view.ts';
import { CATALOG_FILE } from './support/catalog.ts';
import { newUser, shutdownTolerantPool, withEnv, type TestUser } from './support/stack.ts';

// docs/openapi.yaml: the bodies below must be what it documents.
const spec = parseYaml(readFileSync(path.resolve(import.meta.dirname, '../docs/openapi.yaml'), 'utf8')) as Record<string, unknown>;
const ajv = addFormats.default(new Ajv2020({ strict: true, strictTypes: false, allowUnionTypes: true, allErrors: true }));
ajv.addVocabulary(['discriminator', 'xml', 'externalDocs', 'example', 'openapi', 'paths', 'components']);
ajv.addSchema({ $id: 'spec', openapi: spec['openapi'], paths: spec['paths'], components: spec['components'] }, undefined, undefined, false);
function documented(pointer: string, body: unknown): void {
  const validate = ajv.getSchema(`spec#${pointer}`);
  if (!validate) throw new Error(`no schema at ${pointer}`);
  expect(validate(body), JSON.stringify(validate.errors)).toBe(true);
}

let own: ThrowawayStack;
let pool: pg.Pool;
let catalogFile: string;

beforeAll(async () => {
  own = await startThrowawayStack('usage-api', { ownDatabase: true });
  pool = shutdownTolerantPool(own.env['DATABASE_URL'] ?? '');
  const shipped = JSON.parse(await readFile(CATALOG_FILE, 'utf8')) as { plans: Record<string, Record<string, unknown>> } & Record<string, unknown>;
  Object.assign(shipped.plans['pro'] ?? {}, { limits: { sites: 3, projects: 5 }, usage: { pageviews: { included: 1000, overage: 'block' } } });
  // pro's trial keeps fewer sites than the plan: a checkout that starts it is held to those.
  Object.assign((shipped.plans['pro'] ?? {})['trial'] ?? {}, { limits: { sites: 2 } });
  Object.assign(shipped.plans['business'] ?? {}, { limits: { sites: 10 } });
  shipped['free'] = { limits: { sites: 1 }, usage: { pageviews: { included: 100, overage: 'block', graceDays: 3 } } };
  catalogFile = path.join(await mkdtemp(path.join(tmpdir(), 'catalog-')), 'catalog.json');
  await writeFile(catalogFile, JSON.stringify(shipped));
  await pushCatalog(own.env, catalogFile); // Stripe's prices and the database's limits
  await q(`create table public.sites (id uuid primary key default gen_random_uuid(), team_id uuid)`);
  await q(`select billing_attach_limit('public.sites', 'sites', 'team_id')`);
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await own?.stop();
});

async function q<Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await pool.query<Row>(sql, params)).rows;
}

const env = () => ({ ...own.env, BILLING_CATALOG: catalogFile });
const user = () => withEnv(own.env, () => Promise.resolve(newUser())); // signed for this stack
const DAY_MS = 86_400_000;
const daysFromNow = (days: number) => new Date(Date.now() + days * DAY_MS).toISOString();

async function statusOf(caller: TestUser, query = ''): Promise<Record<string, unknown>> {
  const response = await withEnv(env(), () =>
    status(new Request(`http://localhost/api/stripe/subscription${query}`, { headers: { authorization: `Bearer ${caller.token}` } })),
  );
  expect(response.status).toBe(200);
  const body = (await response.json()) as Record<string, unknown>;
  documented('/components/schemas/SubscriptionResponse', body);
  return body;
}

async function checkoutOf(caller: TestUser, body: unknown): Promise<Response> {
  return withEnv(env(), () =>
    checkout(new Request('http://localhost/api/stripe/checkout', {
      method: 'POST',
      headers: { authorization: `Bearer ${caller.token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })),
  );
}

/** A team owned by `owner`, subscribed to the price of `lookupKey` in `status`. */
async function team(owner: TestUser, sub: { lookupKey: string; status: string; start: string; end: string } | null): Promise<string> {
  const id = randomUUID();
  await q(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [id, owner.id]);
  if (!sub) return id;
  const customer = `cus_${randomUUID().slice(0, 12)}`;
  await q('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [id, customer]);
  await q(
    `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
       cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
     select $1, $2, $3, $4, p.stripe_price_id, pl.stripe_product_id, true, false, $5, $6, now(), now(), 'evt_usage_api'
     from billing_prices p join billing_plans pl using (plan) where p.lookup_key = $7`,
    [`sub_${randomUUID().slice(0, 12)}`, customer, id, sub.status, sub.start, sub.end, sub.lookupKey],
  );
  return id;
}

describe('GET /api/stripe/subscription: limits and usage', () => {
  it('a free user has them too, beside a null subscription: the free entry, nothing used', async () => {
    const body = await statusOf(await user());
    const month = new Date();
    const start = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth(), 1)).toISOString();
    const end = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1)).toISOString();
    expect(body).toEqual({
      subscription: null,
      // projects: declared by a plan only, so the free entry gives 0; no table counts it.
      limits: { sites: { limit: 1, used: 0 }, projects: { limit: 0, used: null } },
      usage: { pageviews: { used: 0, included: 100, window: { start, end }, state: 'ok', graceEndsAt: null } },
    });
  });

  it("a team's, for ?team=: its plan's limits, its attached count, and this period's use", async () => {
    const owner = await user();
    const start = daysFromNow(-3);
    const end = daysFromNow(27);
    const id = await team(owner, { lookupKey: 'pro_monthly', status: 'active', start, end });
    await q('insert into public.sites (team_id) select $1 from generate_series(1, 2)', [id]);
    await q(`select billing_track($1, 'pageviews', 950, 'k1')`, [id]);
    const body = await statusOf(owner, `?team=${id}`);
    expect(body).toMatchObject({
      subscription: { status: 'active', plan: 'pro', access: true },
      limits: { sites: { limit: 3, used: 2 }, projects: { limit: 5, used: null } },
      usage: { pageviews: { used: 950, included: 1000, window: { start, end }, state: 'warning', graceEndsAt: null } },
      team: { id, role: 'owner', members: 1 },
    });
    expect(Object.keys(body)).toEqual(['subscription', 'limits', 'usage', 'team']);
  });

  it('grace: says when it ends, from the windows that ended over the included amount', async () => {
    const owner = await user();
    const id = await team(owner, null);
    // Calendar months (no subscription): two ended windows far over 100 start 3 days of grace.
    const now = new Date();
    const monthStart = (k: number) => new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + k, 1)).toISOString();
    await q(
      `insert into billing_usage_windows (subject_id, meter, window_start, window_end, used)
       values ($1, 'pageviews', $2, $3, 500), ($1, 'pageviews', $3, $4, 500)`,
      [id, monthStart(-2), monthStart(-1), monthStart(0)],
    );
    const [expected] = await q<{ state: string; ends: Date }>(
      `select billing_usage_state($1, 'pageviews') as state, $2::timestamptz + interval '3 days' as ends`,
      [id, monthStart(0)],
    );
    const body = await statusOf(owner, `?team=${id}`);
    const pageviews = (body['usage'] as Record<string, { state: string; graceEndsAt: string | null }>)['pageviews'];
    expect(pageviews?.state).toBe(expected?.state);
    expect(['grace', 'locked']).toContain(pageviews?.state);
    expect(pageviews?.graceEndsAt).toBe(expected?.ends.toISOString());
  });
});

describe('POST /api/stripe/checkout: a plan whose limits the subject already passes', () => {
  it('is refused with 400 and the keys; a plan that holds them is sold', async () => {
    const owner = await user();
    // A business subscription that ended, with 5 sites kept (counts never shrink by themselves).
    const id = await team(owner, { lookupKey: 'business_monthly', status: 'active', start: daysFromNow(-40), end: daysFromNow(-10) });
    await q('insert into public.sites (team_id) select $1 from generate_series(1, 5)', [id]);
    await q(`update billing_subscriptions set status = 'canceled' where user_id = $1`, [id]);

    const refused = await checkoutOf(owner, { team: id, price: 'pro_monthly' });
    expect(refused.status).toBe(400);
    const error: unknown = await refused.json();
    expect(error).toEqual({ error: "Usage exceeds the plan's limits: sites" });
    documented('/paths/~1api~1stripe~1checkout/post/responses/400/content/application~1json/schema', error);

    const sold = await checkoutOf(owner, { team: id, price: 'business_monthly' });
    expect(sold.status).toBe(200);
    expect(await sold.json()).toMatchObject({ url: expect.any(String) as unknown });
  });
});

describe('POST /api/stripe/checkout: a plan whose trial starts is held to the trial\'s limits', () => {
  it('refuses pro while its trial (2 sites) would start for a team with 3; once the team had a trial, pro (3 sites) is sold', async () => {
    const owner = await user();
    const id = await team(owner, { lookupKey: 'business_monthly', status: 'active', start: daysFromNow(-40), end: daysFromNow(-10) });
    await q('insert into public.sites (team_id) select $1 from generate_series(1, 3)', [id]);
    await q(`update billing_subscriptions set status = 'canceled' where user_id = $1`, [id]);

    const refused = await checkoutOf(owner, { team: id, price: 'pro_monthly' });
    expect(refused.status).toBe(400);
    expect(await refused.json()).toEqual({ error: "Usage exceeds the plan's limits: sites" });
    // The database's decision, for the plan and for its trial.
    expect(await q(`select billing_exceeded_limits($1, 'pro', true) as trial, billing_exceeded_limits($1, 'pro', false) as plan`, [id]))
      .toEqual([{ trial: ['sites'], plan: [] }]);

    // The team's business subscription had a trial: pro's would not start, and the plan's 3 sites hold.
    await q(`update billing_subscriptions set trial_start = $2, trial_end = $3 where user_id = $1`, [id, daysFromNow(-40), daysFromNow(-30)]);
    const sold = await checkoutOf(owner, { team: id, price: 'pro_monthly' });
    expect(sold.status).toBe(200);
    expect(await sold.json()).toMatchObject({ url: expect.any(String) as unknown });
  });
});

it("docs/openapi.yaml's usage states are the code's", () => {
  const schemas = (spec['components'] as { schemas: Record<string, { properties: Record<string, { additionalProperties: { properties: Record<string, { enum?: unknown }> } }> }> }).schemas;
  expect(schemas['SubscriptionResponse']?.properties['usage']?.additionalProperties.properties['state']?.enum).toEqual([...USAGE_STATES]);
});
