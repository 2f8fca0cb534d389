// Billed overage (docs/usage.md, "Billed overage"): a meter with overage "bill" in the
// catalog, pushed by billing:setup as a Stripe meter and metered prices, sold by checkout
// as a second line item, added to existing subscriptions by --add-metered-items, and
// estimated in the status body. Declared meters apply database-wide, so this file runs
// against a stack of its own.
//
// The local bridge keeps the meters created through it (scripts/stack/bridge-meters.ts),
// as Stripe does, so setup's "find the meter I made before" is tested against that.

import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import pg from 'pg';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse as parseYaml } from 'yaml';
import checkout from '../netlify/functions/stripe-checkout.mts';
import status from '../netlify/functions/stripe-subscription.mts';
import { overageText } from '../public/dashboard/overage.js';
import { pushCatalog } from '../scripts/lib/local-catalog.ts';
import type { RecordedStripeRequest } from '../scripts/stack/stripe-mock-bridge.ts';
import { startThrowawayStack, type ThrowawayStack } from '../scripts/stack/throwaway.ts';
import {
  CatalogError,
  isCatalogMeteredPrice,
  meteredPrices,
  parseCatalog,
  type HeldPrice,
  type MeteredPriceInPlan,
} from '../src/catalog/catalog.ts';
import { addMeteredItems, storedCatalog, webhookEvents } from '../src/setup/setup.ts';
import { loadSetupConfig } from '../src/config/config.ts';
import { createStripe } from '../src/stripe/client.ts';
import { CATALOG_FILE } from './support/catalog.ts';
import { newUser, withEnv, type TestUser } from './support/stack.ts';

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

type RawCatalog = Record<string, unknown> & { plans: Record<string, Record<string, unknown>> };

/** €1 per started 10,000 pageviews past 100,000 on pro; €0.01 per pageview on business. */
const PRO_PAGEVIEWS = {
  included: 100_000,
  overage: 'bill',
  price: { amount: 100, currency: 'eur', per: 10_000, lookupKeys: { month: 'pro_pageviews_monthly', year: 'pro_pageviews_yearly' } },
};
const BUSINESS_PAGEVIEWS = {
  included: 1_000_000,
  overage: 'bill',
  price: { amount: 1, currency: 'eur', lookupKeys: { month: 'business_pageviews_monthly', year: 'business_pageviews_yearly' } },
};

async function shippedWith(edit: (catalog: RawCatalog) => void): Promise<RawCatalog> {
  const catalog = JSON.parse(await readFile(CATALOG_FILE, 'utf8')) as RawCatalog;
  edit(catalog);
  return catalog;
}

const billing = (c: RawCatalog) => {
  Object.assign(c.plans['pro'] ?? {}, { usage: { pageviews: PRO_PAGEVIEWS, events: { included: 50, overage: 'allow' } } });
  Object.assign(c.plans['business'] ?? {}, { usage: { pageviews: BUSINESS_PAGEVIEWS } });
};

function problemsOf(raw: unknown): readonly string[] {
  try {
    parseCatalog(raw, 'test');
  } catch (error) {
    if (error instanceof CatalogError) return error.problems;
    throw error;
  }
  return [];
}

describe('the catalog: a billed meter', () => {
  it('parses its price, one metered price per plan interval, and stores it for billing_sync_catalog', async () => {
    const catalog = parseCatalog(await shippedWith(billing), 'test');
    expect(catalog.plans[0]?.usage['pageviews']).toEqual(PRO_PAGEVIEWS);
    // Absent, per is 1: per unit.
    expect(catalog.plans[1]?.usage['pageviews']?.price?.per).toBe(1);
    expect(meteredPrices(catalog).map((e) => [e.plan.key, e.meter, e.interval, e.lookupKey, e.productId])).toEqual([
      ['pro', 'pageviews', 'month', 'pro_pageviews_monthly', 'analytics_pro-pageviews'],
      ['pro', 'pageviews', 'year', 'pro_pageviews_yearly', 'analytics_pro-pageviews'],
      ['business', 'pageviews', 'month', 'business_pageviews_monthly', 'analytics_business-pageviews'],
      ['business', 'pageviews', 'year', 'business_pageviews_yearly', 'analytics_business-pageviews'],
    ]);
    expect(storedCatalog(catalog, new Map()).plans[0]?.usage['pageviews']).toEqual(PRO_PAGEVIEWS);
    // The endpoint gets invoice.created, for the usage reporter (a handled event).
    expect(webhookEvents()).toContain('invoice.created');
  });

  it('refuses a billed meter without a price, a price elsewhere, another currency, intervals not the plan\'s, a lookup key used twice, and billing the free entry', async () => {
    const bad = await shippedWith((c) => {
      Object.assign(c.plans['pro'] ?? {}, {
        usage: {
          pageviews: { included: 10, overage: 'bill' },
          events: { included: 10, overage: 'allow', price: PRO_PAGEVIEWS.price },
          visitors: { included: 10, overage: 'bill', price: { amount: 5, currency: 'usd', per: 0, lookupKeys: { month: 'pro_monthly', week: 'pro_visitors_weekly' } } },
        },
      });
      c['free'] = { usage: { pageviews: { included: 10, overage: 'bill', price: { amount: 1, currency: 'eur', lookupKeys: { month: 'free_pageviews' } } } } };
    });
    expect(problemsOf(bad)).toEqual([
      'plans.pro.usage.pageviews.price must be an object {amount, currency, per?, lookupKeys} for a meter whose overage is "bill"',
      'plans.pro.usage.events.price is for a meter whose overage is "bill"',
      'plans.pro.usage.visitors.price.per must be a whole number of 1 or more (units per package)',
      "plans.pro.usage.visitors.price.currency must be the plan's prices' currency",
      'plans.pro.usage.visitors.price.lookupKeys lacks the plan\'s interval year',
      'plans.pro.usage.visitors.price.lookupKeys.month pro_monthly is used twice',
      'plans.pro.usage.visitors.price.lookupKeys.week is not an interval the plan sells',
      'free.usage.pageviews.overage cannot be "bill": a subject without access has no subscription to bill',
    ]);
  });
});

it("docs/usage.md's billed meter is a catalog's, and costs what it says", async () => {
  const text = await readFile(path.resolve(import.meta.dirname, '../docs/usage.md'), 'utf8');
  const snippet = JSON.parse(`{${/## Billed overage[\s\S]*?```json\n([\s\S]*?)```/.exec(text)?.[1] ?? ''}}`) as { pro: Record<string, unknown> };
  const catalog = parseCatalog(await shippedWith((c) => Object.assign(c.plans['pro'] ?? {}, snippet.pro)), 'docs/usage.md');
  expect(catalog.plans[0]?.usage['pageviews']).toEqual(PRO_PAGEVIEWS);
  expect(text).toContain('10,001 past the included amount is\n€2');
});

describe('a metered price is the catalog\'s only as the catalog says', () => {
  const entry = { plan: { key: 'pro' }, meter: 'pageviews', price: { ...PRO_PAGEVIEWS.price }, interval: 'month', lookupKey: 'pro_pageviews_monthly', productId: 'analytics_pro-pageviews' } as unknown as MeteredPriceInPlan;
  const held: HeldPrice = {
    productId: 'analytics_pro-pageviews',
    amount: 100,
    currency: 'eur',
    interval: 'month',
    perUnitEachInterval: true,
    usageType: 'metered',
    meterId: 'mtr_ours',
    transform: { divideBy: 10_000, round: 'up' },
  };

  it.each<[string, Partial<HeldPrice>, string | null]>([
    ['another product', { productId: 'analytics_pro' }, 'mtr_ours'],
    ['another amount', { amount: 90 }, 'mtr_ours'],
    ['another currency', { currency: 'usd' }, 'mtr_ours'],
    ['another interval', { interval: 'year' }, 'mtr_ours'],
    ['licensed', { usageType: 'licensed', meterId: null }, 'mtr_ours'],
    ['on another meter', { meterId: 'mtr_other' }, 'mtr_ours'],
    ['with no meter of ours in Stripe', {}, null],
    ['another package', { transform: { divideBy: 1000, round: 'up' } }, 'mtr_ours'],
    ['rounding down', { transform: { divideBy: 10_000, round: 'down' } }, 'mtr_ours'],
    ['per unit', { transform: null }, 'mtr_ours'],
    ['tiered or every 3 months', { perUnitEachInterval: false }, 'mtr_ours'],
  ])('not with %s', (_name, change, meterId) => {
    expect(isCatalogMeteredPrice(entry, held, 'mtr_ours')).toBe(true);
    expect(isCatalogMeteredPrice(entry, { ...held, ...change }, meterId)).toBe(false);
  });
});

// Against the stack -------------------------------------------------------------------------

let own: ThrowawayStack;
let pool: pg.Pool;
let catalogFile: string;
/** The meter id the first setup's prices name (what stripe-mock answered its create with). */
let meterId: string;

beforeAll(async () => {
  own = await startThrowawayStack('meters-catalog', { ownDatabase: true });
  pool = new pg.Pool({ connectionString: own.env['DATABASE_URL'], max: 4 });
  catalogFile = await writeCatalog(await shippedWith(billing));
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await own?.stop();
});

async function writeCatalog(raw: unknown): Promise<string> {
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'catalog-')), 'catalog.json');
  await writeFile(file, JSON.stringify(raw));
  return file;
}

async function q<Row extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<Row[]> {
  return (await pool.query<Row>(sql, params)).rows;
}

async function bridge(pathname: string, init: RequestInit = {}): Promise<unknown> {
  const response = await fetch(`${own.env['STRIPE_API_BASE']}${pathname}`, { ...init, headers: { 'content-type': 'application/json' } });
  if (!response.ok) throw new Error(`bridge ${pathname}: ${response.status}`);
  return response.json();
}
const requests = async (filter: (r: RecordedStripeRequest) => boolean) => ((await bridge('/__bridge/requests')) as RecordedStripeRequest[]).filter(filter);
const clearRequests = () => bridge('/__bridge/requests', { method: 'DELETE' });
const postObject = (pathname: string, body: unknown) => bridge('/__bridge/objects', { method: 'POST', body: JSON.stringify({ path: pathname, body }) });
const list = (url: string, data: readonly unknown[]) => ({ object: 'list', url, has_more: false, data });

const localStripe = () => {
  const base = new URL(own.env['STRIPE_API_BASE'] ?? '');
  return new Stripe(own.env['STRIPE_SECRET_KEY'] ?? '', { host: base.hostname, port: Number(base.port), protocol: 'http' });
};
async function priceIdOf(lookupKey: string): Promise<string> {
  const { data } = await localStripe().prices.list({ lookup_keys: [lookupKey], active: true });
  const price = data.find((p) => p.lookup_key === lookupKey);
  if (!price) throw new Error(`no price ${lookupKey}`);
  return price.id;
}

describe('billing:setup with a billed meter', () => {
  it('creates the meter, a product per plan meter and a metered price per plan interval, and stores the price in the database', async () => {
    await clearRequests();
    const report = await pushCatalog(own.env, catalogFile);

    const meterCreates = await requests((r) => r.method === 'POST' && r.path === '/v1/billing/meters');
    expect(meterCreates.map((r) => r.params)).toEqual([
      {
        display_name: 'pageviews past the included amount',
        event_name: 'pageviews',
        'default_aggregation[formula]': 'sum',
        'customer_mapping[type]': 'by_id',
        'customer_mapping[event_payload_key]': 'stripe_customer_id',
        'value_settings[event_payload_key]': 'value',
      },
    ]);
    // stripe-mock answers a retrieve of any id, so the products are updated, not created.
    const products = await requests((r) => r.method === 'POST' && r.path.startsWith('/v1/products/') && r.path.endsWith('-pageviews'));
    expect(products.map((r) => [r.path, r.params['name'], r.params['metadata[plan]'], r.params['metadata[meter]']])).toEqual([
      ['/v1/products/analytics_pro-pageviews', 'Analytics Pro: pageviews past the included amount', 'pro', 'pageviews'],
      ['/v1/products/analytics_business-pageviews', 'Analytics Business: pageviews past the included amount', 'business', 'pageviews'],
    ]);
    const metered = await requests((r) => r.method === 'POST' && r.path === '/v1/prices' && r.params['recurring[usage_type]'] === 'metered');
    meterId = String(metered[0]?.params['recurring[meter]']);
    expect(meterId).toMatch(/^\w+_\w+$/); // the id stripe-mock gave the meter
    expect(metered.map((r) => r.params)).toEqual([
      expect.objectContaining({
        product: 'analytics_pro-pageviews', currency: 'eur', unit_amount: '100', lookup_key: 'pro_pageviews_monthly',
        'recurring[interval]': 'month', 'recurring[meter]': meterId, 'transform_quantity[divide_by]': '10000', 'transform_quantity[round]': 'up',
      }),
      expect.objectContaining({ product: 'analytics_pro-pageviews', lookup_key: 'pro_pageviews_yearly', 'recurring[interval]': 'year', 'transform_quantity[divide_by]': '10000' }),
      expect.objectContaining({ product: 'analytics_business-pageviews', unit_amount: '1', lookup_key: 'business_pageviews_monthly', 'recurring[interval]': 'month' }),
      expect.objectContaining({ product: 'analytics_business-pageviews', lookup_key: 'business_pageviews_yearly', 'recurring[interval]': 'year' }),
    ]);
    // Per unit: no transform_quantity.
    expect(metered[2]?.params['transform_quantity[divide_by]']).toBeUndefined();
    expect(report.next).toEqual([expect.stringContaining('npm run billing:setup -- --add-metered-items')]);

    const [endpoint] = await requests((r) => r.method === 'POST' && r.path === '/v1/webhook_endpoints');
    expect(Object.entries(endpoint?.params ?? {}).filter(([k]) => k.startsWith('enabled_events')).map(([, v]) => v)).toContain('invoice.created');

    expect(await q(`select plan, key, value::int, overage, price_amount::int, price_currency, price_per::int from billing_plan_limits where kind = 'meter' order by plan, key`)).toEqual([
      { plan: 'business', key: 'pageviews', value: 1_000_000, overage: 'bill', price_amount: 1, price_currency: 'eur', price_per: 1 },
      { plan: 'pro', key: 'events', value: 50, overage: 'allow', price_amount: null, price_currency: null, price_per: null },
      { plan: 'pro', key: 'pageviews', value: 100_000, overage: 'bill', price_amount: 100, price_currency: 'eur', price_per: 10_000 },
      // The shipped catalog's free entry.
      { plan: null, key: 'pageviews', value: 10_000, overage: 'allow', price_amount: null, price_currency: null, price_per: null },
    ]);
  });

  it('finds the meter it made by event_name on the next run: no second meter, no new price', async () => {
    await localStripe().billing.meters.create({
      display_name: 'API calls', event_name: 'api_calls', default_aggregation: { formula: 'sum' },
      customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' }, value_settings: { event_payload_key: 'value' },
    });
    await clearRequests();
    const report = await pushCatalog(own.env, catalogFile);
    expect(await requests((r) => r.method === 'POST' && r.path.startsWith('/v1/billing/meters'))).toEqual([]);
    expect(await requests((r) => r.method === 'POST' && r.path === '/v1/prices')).toEqual([]);
    // (stripe-mock keeps no features or products: those are sent again every run.)
    expect(report.changes.filter((c) => c.includes('meter') || c.startsWith('create price'))).toEqual([]);
    expect(report.next).toEqual([]);
  });

  it('reactivates an inactive meter of the key, and refuses one that counts otherwise', async () => {
    const meters = localStripe().billing.meters;
    await meters.deactivate(meterId);
    await clearRequests();
    const report = await pushCatalog(own.env, catalogFile);
    expect(report.changes.filter((c) => c.includes(' meter '))).toEqual([`reactivate meter pageviews (${meterId})`]);
    expect((await requests((r) => r.method === 'POST' && r.path.startsWith('/v1/billing/meters'))).map((r) => r.path)).toEqual([`/v1/billing/meters/${meterId}/reactivate`]);

    // Another meter of the key, counting events: Stripe cannot change a meter's formula.
    await meters.deactivate(meterId);
    const counting = await meters.create({
      display_name: 'pageviews, counted', event_name: 'pageviews', default_aggregation: { formula: 'count' },
      customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
    });
    await expect(pushCatalog(own.env, catalogFile)).rejects.toThrow(/does not sum payload.value per payload.stripe_customer_id/);
    await meters.deactivate(counting.id);
    await meters.reactivate(meterId);
  });

  it('a metered price on another meter under our lookup key is replaced, taking the key over', async () => {
    await localStripe().prices.create({
      product: 'analytics_pro-pageviews', currency: 'eur', unit_amount: 100, lookup_key: 'pro_pageviews_monthly', transfer_lookup_key: true,
      recurring: { interval: 'month', usage_type: 'metered', meter: 'mtr_other' }, transform_quantity: { divide_by: 10_000, round: 'up' },
    });
    await clearRequests();
    const report = await pushCatalog(own.env, catalogFile);
    expect(report.changes.filter((c) => c.startsWith('create price'))).toEqual([expect.stringMatching(/^create price pro_pageviews_monthly .*taking the lookup key from price_/)]);
    const [created] = await requests((r) => r.method === 'POST' && r.path === '/v1/prices');
    expect(created?.params).toMatchObject({ lookup_key: 'pro_pageviews_monthly', transfer_lookup_key: 'true', 'recurring[meter]': meterId });
  });
});

describe('checkout of a plan with a billed meter', () => {
  const sessionOf = async (user: TestUser) =>
    (await requests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id))[0]?.params ?? {};
  const buy = (file: string, user: TestUser, price: string) =>
    withEnv({ ...own.env, BILLING_CATALOG: file }, () =>
      checkout(new Request('http://localhost/api/stripe/checkout', {
        method: 'POST',
        headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ price }),
      })),
    );
  const user = () => withEnv(own.env, () => Promise.resolve(newUser()));

  it.each([
    ['pro_monthly', 'pro_pageviews_monthly'],
    ['pro_yearly', 'pro_pageviews_yearly'],
    ['business_yearly', 'business_pageviews_yearly'],
  ])('%s: the plan price, then the metered price of its interval without a quantity', async (planKey, meteredKey) => {
    const buyer = await user();
    const response = await buy(catalogFile, buyer, planKey);
    expect(response.status).toBe(200);
    const session = await sessionOf(buyer);
    expect(session['line_items[0][price]']).toBe(await priceIdOf(planKey));
    expect(session['line_items[0][quantity]']).toBe('1');
    expect(session['line_items[1][price]']).toBe(await priceIdOf(meteredKey));
    expect(session['line_items[1][quantity]']).toBeUndefined();
    expect(session['line_items[2][price]']).toBeUndefined();
  });

  it('a plan without a billed meter keeps its one line item', async () => {
    const file = await writeCatalog(await shippedWith((c) => Object.assign(c.plans['pro'] ?? {}, { usage: { events: { included: 50, overage: 'allow' } } })));
    const buyer = await user();
    expect((await buy(file, buyer, 'pro_monthly')).status).toBe(200);
    const session = await sessionOf(buyer);
    expect(session['line_items[0][price]']).toBe(await priceIdOf('pro_monthly'));
    expect(session['line_items[1][price]']).toBeUndefined();
  });

  it('is refused with "Plan unavailable" when the metered price under our key is not ours (another meter, per unit), before anything is sent', async () => {
    // Another app takes the key with a per-unit price on its own meter.
    await localStripe().prices.create({
      product: 'analytics_business-pageviews', currency: 'eur', unit_amount: 1, lookup_key: 'business_pageviews_monthly', transfer_lookup_key: true,
      recurring: { interval: 'month', usage_type: 'metered', meter: 'mtr_other_app' },
    });
    const file = await writeCatalog(await shippedWith(billing)); // a fresh read of Stripe
    const buyer = await user();
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const response = await buy(file, buyer, 'business_monthly');
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ error: 'Plan unavailable' });
      const logged = errors.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>);
      expect(logged).toContainEqual(expect.objectContaining({ lookupKey: 'business_pageviews_monthly', catalogMeter: 'pageviews', stripeMeter: 'mtr_other_app' }));
    } finally {
      errors.mockRestore();
    }
    expect(await sessionOf(buyer)).toEqual({});
    // The yearly one is still ours: that plan interval sells.
    expect((await buy(file, await user(), 'business_yearly')).status).toBe(200);
    await pushCatalog(own.env, catalogFile); // ours again, for the tests below
  });
});

describe('billing:setup --add-metered-items', () => {
  const item = (id: string, price: Record<string, unknown>) => ({ id, object: 'subscription_item', quantity: 1, price });
  const stripePrice = (id: string, lookupKey: string | null, product: string, recurring: Record<string, unknown>) => ({
    id, object: 'price', lookup_key: lookupKey, product, currency: 'eur', unit_amount: 900, billing_scheme: 'per_unit', transform_quantity: null,
    recurring: { interval: 'month', interval_count: 1, usage_type: 'licensed', meter: null, ...recurring },
  });
  const subscription = (id: string, items: unknown[]) => ({ id, object: 'subscription', status: 'active', items: { object: 'list', has_more: false, data: items } });

  it('adds the metered item of its plan and interval to a subscription without one, once; leaves one with it, or another product\'s, alone', async () => {
    const proMonthly = await priceIdOf('pro_monthly');
    const meteredMonthly = await priceIdOf('pro_pageviews_monthly');
    const businessYearly = await priceIdOf('business_yearly');
    const active = [
      subscription('sub_before_meters', [item('si_1', stripePrice(proMonthly, 'pro_monthly', 'analytics_pro', {}))]),
      subscription('sub_with_item', [
        item('si_2', stripePrice(proMonthly, 'pro_monthly', 'analytics_pro', {})),
        item('si_3', stripePrice(meteredMonthly, 'pro_pageviews_monthly', 'analytics_pro-pageviews', { usage_type: 'metered', meter: meterId })),
      ]),
      subscription('sub_other_product', [item('si_4', stripePrice('price_other', null, 'prod_other', {}))]),
    ];
    const pastDue = [subscription('sub_yearly_past_due', [item('si_5', stripePrice(businessYearly, 'business_yearly', 'analytics_business', { interval: 'year' }))])];
    await postObject('/v1/subscriptions?status=active', list('/v1/subscriptions', active));
    await postObject('/v1/subscriptions?status=trialing', list('/v1/subscriptions', []));
    await postObject('/v1/subscriptions?status=past_due', list('/v1/subscriptions', pastDue));
    const config = loadSetupConfig({ ...own.env, BILLING_CATALOG: catalogFile });
    const stripe = await createStripe(config.stripe);

    const dry = await addMeteredItems({ stripe, catalog: config.catalog }, { dryRun: true });
    expect(dry.changes).toHaveLength(2);
    await clearRequests();
    const report = await addMeteredItems({ stripe, catalog: config.catalog });
    expect(report.subscriptions).toBe(4);
    expect(report.otherPrice).toEqual([]);
    const added = await requests((r) => r.method === 'POST' && r.path === '/v1/subscription_items');
    expect(added.map((r) => [r.params, r.idempotencyKey])).toEqual([
      [{ subscription: 'sub_before_meters', price: meteredMonthly, proration_behavior: 'none' }, `billing-metered-item-sub_before_meters-${meteredMonthly}`],
      [
        { subscription: 'sub_yearly_past_due', price: await priceIdOf('business_pageviews_yearly'), proration_behavior: 'none' },
        `billing-metered-item-sub_yearly_past_due-${await priceIdOf('business_pageviews_yearly')}`,
      ],
    ]);
  });
});

describe('npm run billing:setup says how existing subscribers get the metered item', () => {
  const run = (file: string, args: string[]) =>
    new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [path.resolve(import.meta.dirname, '../scripts/billing-setup.ts'), ...args], { env: { ...process.env, ...own.env, BILLING_CATALOG: file } }, (error, _stdout, stderr) =>
        resolve({ code: typeof error?.code === 'number' ? error.code : 0, stderr }),
      );
    });

  it('a new metered price: the next step names --add-metered-items; with it, the items it adds', async () => {
    const renamed = await writeCatalog(
      await shippedWith((c) => {
        billing(c);
        Object.assign(c.plans['pro'] ?? {}, {
          usage: { pageviews: { ...PRO_PAGEVIEWS, price: { ...PRO_PAGEVIEWS.price, lookupKeys: { month: 'pro_pageviews_monthly_v2', year: 'pro_pageviews_yearly' } } } },
        });
      }),
    );
    const dry = await run(renamed, ['--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stderr).toContain('~ create price pro_pageviews_monthly_v2 (100 eur per 10000 units of pageviews past 100000, metered, /month, analytics_pro-pageviews)');
    expect(dry.stderr).toContain('Next: subscriptions that started before pro_pageviews_monthly_v2 existed have no item of it');
    expect(dry.stderr).toContain('npm run billing:setup -- --add-metered-items');

    // The subscriptions the bridge lists (the test above): two lack their item.
    const items = await run(catalogFile, ['--dry-run', '--add-metered-items']);
    expect(items.code).toBe(0);
    expect(items.stderr).toContain('Metered items, over 4 active, trialing and past_due subscriptions:');
    expect(items.stderr).toContain('~ add pro_pageviews_monthly');
    expect(items.stderr).toContain('to sub_before_meters (pro, active)');
    expect(items.stderr).not.toContain('Next:');
  }, 60_000);
});

describe('GET /api/stripe/subscription: the overage estimate of a billed meter', () => {
  const DAY_MS = 86_400_000;
  const daysFromNow = (days: number) => new Date(Date.now() + days * DAY_MS).toISOString();

  /** A user subscribed to the price of `lookupKey`, active in a period around now. */
  async function subscriber(lookupKey: string): Promise<TestUser> {
    const user = await withEnv(own.env, () => Promise.resolve(newUser()));
    const customer = `cus_${randomUUID().slice(0, 12)}`;
    await q('insert into billing_customers (user_id, stripe_customer_id) values ($1, $2)', [user.id, customer]);
    await q(
      `insert into billing_subscriptions (stripe_subscription_id, stripe_customer_id, user_id, status, price_id, product_id, for_this_product,
         cancel_at_period_end, current_period_start, current_period_end, stripe_created_at, state_event_created, state_event_id)
       select $1, $2, $3, 'active', p.stripe_price_id, pl.stripe_product_id, true, false, $4, $5, now(), now(), 'evt_meters_catalog'
       from billing_prices p join billing_plans pl using (plan) where p.lookup_key = $6`,
      [`sub_${randomUUID().slice(0, 12)}`, customer, user.id, daysFromNow(-20), daysFromNow(10), lookupKey],
    );
    return user;
  }

  async function usageOf(user: TestUser): Promise<Record<string, Record<string, unknown>>> {
    const response = await withEnv({ ...own.env, BILLING_CATALOG: catalogFile }, () =>
      status(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } })),
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    documented('/components/schemas/SubscriptionResponse', body);
    return body['usage'] as Record<string, Record<string, unknown>>;
  }

  it('units past included, whole packages started (as Stripe rounds), in the plan\'s currency; absent for a meter that is not billed', async () => {
    const user = await subscriber('pro_monthly');
    expect((await usageOf(user))['pageviews']).toMatchObject({ used: 0, included: 100_000, state: 'ok', overage: { units: 0, amount: 0, currency: 'eur' } });

    await q(`select billing_track($1, 'pageviews', 123456, 'a')`, [user.id]);
    await q(`select billing_track($1, 'events', 70, 'b')`, [user.id]);
    const usage = await usageOf(user);
    // 23,456 past 100,000: three started packages of 10,000 at €1.
    expect(usage['pageviews']).toMatchObject({ used: 123_456, state: 'over', overage: { units: 23_456, amount: 300, currency: 'eur' } });
    expect(usage['events']).toMatchObject({ used: 70, state: 'over' });
    expect(usage['events']).not.toHaveProperty('overage');

    await q(`select billing_track($1, 'pageviews', 6544, 'c')`, [user.id]);
    expect((await usageOf(user))['pageviews']?.['overage']).toEqual({ units: 30_000, amount: 300, currency: 'eur' });
  });

  it('per unit on business; a user without a plan has no estimate (the free entry bills nothing)', async () => {
    const user = await subscriber('business_monthly');
    await q(`select billing_track($1, 'pageviews', 1000123, 'a')`, [user.id]);
    expect((await usageOf(user))['pageviews']?.['overage']).toEqual({ units: 123, amount: 123, currency: 'eur' });
    const free = await withEnv(own.env, () => Promise.resolve(newUser()));
    expect((await usageOf(free))['pageviews']).not.toHaveProperty('overage');
  });

  it('a billed meter is paid for past its included amount: windows that ended far over it start no grace', async () => {
    const user = await subscriber('pro_monthly');
    const [{ start } = { start: '' }] = await q<{ start: Date }>(`select window_start as start from billing_usage_window($1, now())`, [user.id]);
    const windowStart = (k: number) => new Date(new Date(start).getTime() + k * 30 * DAY_MS).toISOString();
    await q(
      `insert into billing_usage_windows (subject_id, meter, window_start, window_end, used)
       values ($1, 'pageviews', $2, $3, 900000), ($1, 'pageviews', $3, $4, 900000)`,
      [user.id, windowStart(-2), windowStart(-1), new Date(start).toISOString()],
    );
    expect((await usageOf(user))['pageviews']).toMatchObject({ state: 'ok', graceEndsAt: null });
  });

  it('billing_overage_amount: the rounding, once', async () => {
    expect(await q(`select billing_overage_amount(23456, 100, 10000)::int as a, billing_overage_amount(0, 100, 10000)::int as b,
      billing_overage_amount(-5, 100, 10000)::int as c, billing_overage_amount(10000, 100, 10000)::int as d, billing_overage_amount(7, 3, 1)::int as e,
      billing_overage_amount(10001, 100, 10000)::int as f`)).toEqual([
      { a: 300, b: 0, c: 0, d: 100, e: 21, f: 200 },
    ]);
  });
});

it("the example dashboard's line under a billed meter's bar", () => {
  const money = (amount: number, currency: string) => `${amount} ${currency}`;
  expect(overageText({ overage: { units: 23_456, amount: 300, currency: 'eur' } }, money)).toBe(
    '23,456 past the included amount this window: about 300 eur so far, billed on the next invoice.',
  );
  expect(overageText({ overage: { units: 0, amount: 0, currency: 'eur' } }, money)).toBe('Use past the included amount is billed; none so far this window.');
  expect(overageText({}, money)).toBeNull();
});
