// The catalog through the front door: billing:setup against stripe-mock (asserting what
// was sent), checkout by plan, GET /api/stripe/plans, and the plan in the status.

import { readFile, writeFile } from 'node:fs/promises';
import { describe, expect, it, vi } from 'vitest';
import checkout from '../netlify/functions/stripe-checkout.mts';
import plans from '../netlify/functions/stripe-plans.mts';
import subscription from '../netlify/functions/stripe-subscription.mts';
import webhook from '../netlify/functions/stripe-webhook.mts';
import { PINNED_API_VERSION } from '../src/stripe/api-version.ts';
import { HANDLED_EVENT_TYPES } from '../src/events/reduce.ts';
import { catalogEnv, priceIdOf, runSetup, takeLookupKey, uniqueCatalog } from './support/catalog.ts';
import { entitlementSummaryEvent, subscriptionScheduleEvent } from '../scripts/lib/stripe-events.ts';
import { checkoutCompletedEvent, newIds, subscriptionEvent } from './support/events.ts';
import { authedPost, expectCors, newUser, query, signedDelivery, stripeRequests, withEnv, type TestUser } from './support/stack.ts';

const DAY = 86_400;
const now = () => Math.floor(Date.now() / 1000);
const PRO = ['unlimited_sites', 'realtime_dashboard', 'custom_events', 'advanced_filtering'];
const BUSINESS = [...PRO, 'shared_dashboards', 'api_access'];

const post = (user: TestUser, body?: string) =>
  withEnv(catalogEnv(), () => checkout(authedPost('http://localhost/api/stripe/checkout', user.token, body === undefined ? {} : { body })));

async function sessionsOf(user: TestUser) {
  return stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['client_reference_id'] === user.id);
}

async function deliver(event: unknown): Promise<void> {
  const response = await withEnv(catalogEnv(), () => webhook(signedDelivery(JSON.stringify(event))));
  expect(response.status).toBe(200);
}

async function status(user: TestUser): Promise<Record<string, unknown> | null> {
  const response = await withEnv(catalogEnv(), () =>
    subscription(new Request('http://localhost/api/stripe/subscription', { headers: { authorization: `Bearer ${user.token}` } })),
  );
  expect(response.status).toBe(200);
  return ((await response.json()) as { subscription: Record<string, unknown> | null }).subscription;
}

describe('npm run billing:setup, against stripe-mock', () => {
  it('sends the features, products, prices, portal configuration and webhook endpoint; a second run sends no new prices or endpoint', async () => {
    const { file, tag } = await uniqueCatalog();
    const mine = (r: { path: string; params: Record<string, string> }) => JSON.stringify(r).includes(tag);
    const first = await runSetup(file);
    expect(first.changes.length).toBeGreaterThan(0);

    const features = await stripeRequests((r) => r.method === 'POST' && r.path === '/v1/entitlements/features');
    expect(new Set(features.map((r) => r.params['lookup_key']))).toEqual(
      new Set(['unlimited_sites', 'realtime_dashboard', 'custom_events', 'advanced_filtering', 'shared_dashboards', 'api_access']),
    );

    const products = await stripeRequests((r) => r.method === 'POST' && /^\/v1\/products(\/[^/]+)?$/.test(r.path) && mine(r));
    // stripe-mock answers a retrieve of any id, so the products are updated, not created.
    expect(products.map((r) => [r.path, r.params['name']]).sort()).toEqual([
      [`/v1/products/analytics_business_${tag}`, 'Analytics Business'],
      [`/v1/products/analytics_pro_${tag}`, 'Analytics Pro'],
    ]);
    const attached = await stripeRequests((r) => r.method === 'POST' && /^\/v1\/products\/[^/]+\/features$/.test(r.path) && mine(r));
    expect(attached.filter((r) => r.path.includes('business'))).toHaveLength(6);
    expect(attached.filter((r) => r.path.includes('_pro_'))).toHaveLength(4);

    const prices = await stripeRequests((r) => r.method === 'POST' && r.path === '/v1/prices' && mine(r));
    expect(prices.map((r) => r.params).sort((a, b) => String(a['lookup_key']).localeCompare(String(b['lookup_key'])))).toEqual([
      expect.objectContaining({ lookup_key: `business_monthly_${tag}`, unit_amount: '2900', currency: 'eur', 'recurring[interval]': 'month', product: `analytics_business_${tag}` }),
      expect.objectContaining({ lookup_key: `business_yearly_${tag}`, unit_amount: '29000', currency: 'eur', 'recurring[interval]': 'year', product: `analytics_business_${tag}` }),
      expect.objectContaining({ lookup_key: `pro_monthly_${tag}`, unit_amount: '900', currency: 'eur', 'recurring[interval]': 'month', product: `analytics_pro_${tag}` }),
      expect.objectContaining({ lookup_key: `pro_yearly_${tag}`, unit_amount: '9000', currency: 'eur', 'recurring[interval]': 'year', product: `analytics_pro_${tag}` }),
    ]);

    const [portal] = await stripeRequests((r) => r.method === 'POST' && r.path.startsWith('/v1/billing_portal/configurations') && mine(r));
    expect(portal?.params).toMatchObject({
      'features[subscription_update][enabled]': 'true',
      'features[subscription_update][default_allowed_updates][0]': 'price',
      'features[subscription_update][proration_behavior]': 'always_invoice',
      'features[subscription_update][schedule_at_period_end][conditions][0][type]': 'decreasing_item_amount',
      'features[subscription_update][schedule_at_period_end][conditions][1][type]': 'shortening_interval',
      'features[subscription_update][products][0][product]': `analytics_pro_${tag}`,
      'features[subscription_update][products][1][product]': `analytics_business_${tag}`,
      'features[subscription_cancel][enabled]': 'true',
      'features[subscription_cancel][mode]': 'at_period_end',
      default_return_url: 'https://analytics.example.com/dashboard',
    });
    expect(Object.keys(portal?.params ?? {}).filter((k) => k.startsWith('features[subscription_update][products][0][prices]'))).toHaveLength(2);

    const endpoints = await stripeRequests((r) => r.method === 'POST' && r.path === '/v1/webhook_endpoints');
    const endpoint = endpoints.at(-1);
    expect(endpoint?.params['url']).toBe('https://analytics.example.com/api/stripe/webhook');
    expect(endpoint?.params['api_version']).toBe(PINNED_API_VERSION);
    const events = Object.entries(endpoint?.params ?? {}).filter(([k]) => k.startsWith('enabled_events')).map(([, v]) => v);
    expect(events.sort()).toEqual([...HANDLED_EVENT_TYPES].sort());

    // The database knows the plans and the price ids Stripe gave.
    const stored = await query<{ lookup_key: string; plan: string }>('select lookup_key, plan from billing_prices where lookup_key like $1 order by lookup_key', [`%_${tag}`]);
    expect(stored.map((r) => r.plan)).toEqual([`business_${tag}`, `business_${tag}`, `pro_${tag}`, `pro_${tag}`]);

    // Again: the prices and the endpoint are found, not made a second time.
    const before = (await stripeRequests((r) => r.method === 'POST' && (r.path === '/v1/prices' || r.path === '/v1/webhook_endpoints'))).length;
    const second = await runSetup(file);
    const after = (await stripeRequests((r) => r.method === 'POST' && (r.path === '/v1/prices' || r.path === '/v1/webhook_endpoints'))).length;
    expect(after).toBe(before);
    expect(second.changes.filter((c) => c.startsWith('create price') || c.startsWith('create webhook'))).toEqual([]);
    expect(second.webhookSecret).toBeNull();
  });

  it('a changed amount makes a new price that takes the lookup key over, and archives the old one', async () => {
    const { file, tag } = await uniqueCatalog();
    await runSetup(file);
    const oldId = (await query<{ stripe_price_id: string }>('select stripe_price_id from billing_prices where lookup_key = $1', [`pro_monthly_${tag}`]))[0]?.stripe_price_id;
    await writeFile(file, (await readFile(file, 'utf8')).replace('"amount": 900,', '"amount": 1200,'));
    const report = await runSetup(file);
    expect(report.changes.filter((c) => c.startsWith('create price'))).toEqual([expect.stringContaining(`pro_monthly_${tag} (1200 eur/month`)]);
    const [created] = await stripeRequests((r) => r.method === 'POST' && r.path === '/v1/prices' && r.params['lookup_key'] === `pro_monthly_${tag}` && r.params['unit_amount'] === '1200');
    expect(created?.params['transfer_lookup_key']).toBe('true');
    expect(await stripeRequests((r) => r.method === 'POST' && r.path === `/v1/prices/${oldId ?? ''}` && r.params['active'] === 'false')).toHaveLength(1);
  });

  it("setup takes a lookup key back from another app's price without archiving that price", async () => {
    const { file, tag } = await uniqueCatalog();
    await runSetup(file);
    const foreign = await takeLookupKey(`pro_monthly_${tag}`, { product: `other_app_${tag}`, amount: 900, currency: 'eur', interval: 'month' });
    await runSetup(file);
    const [created] = await stripeRequests((r) => r.method === 'POST' && r.path === '/v1/prices' && r.params['lookup_key'] === `pro_monthly_${tag}` && r.params['transfer_lookup_key'] === 'true' && r.params['product'] === `analytics_pro_${tag}`);
    expect(created).toBeDefined();
    expect(await priceIdOf(`pro_monthly_${tag}`)).not.toBe(foreign);
    // The other app's price still sells there: it lost the key, not its life.
    expect(await stripeRequests((r) => r.method === 'POST' && r.path === `/v1/prices/${foreign}`)).toEqual([]);
  });

  it('the local Stripe refuses a second price under a lookup key another price holds, as Stripe does', async () => {
    const base = new URL(process.env['STRIPE_API_BASE'] ?? '');
    const response = await fetch(new URL('/v1/prices', base), {
      method: 'POST',
      headers: { authorization: `Bearer ${process.env['STRIPE_SECRET_KEY'] ?? ''}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ currency: 'eur', unit_amount: '900', 'recurring[interval]': 'month', product: 'analytics_pro', lookup_key: 'pro_monthly' }),
    });
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { param?: string; message?: string } };
    expect(error).toMatchObject({ param: 'lookup_key', message: `A price (\`${await priceIdOf('pro_monthly')}\`) already uses that lookup key.` });
  });

  it('--dry-run lists changes and sends nothing', async () => {
    const { file, tag } = await uniqueCatalog();
    const report = await runSetup(file, true);
    expect(report.changes).toEqual(expect.arrayContaining([expect.stringContaining(`create price pro_monthly_${tag}`)]));
    expect(await stripeRequests((r) => r.method !== 'GET' && JSON.stringify(r).includes(tag))).toEqual([]);
    expect(await query('select 1 from billing_plans where plan = $1', [`pro_${tag}`])).toEqual([]);
  });
});

describe('POST /api/stripe/checkout with a catalog', () => {
  it.each(['pro_monthly', 'pro_yearly', 'business_monthly', 'business_yearly'])('sells %s', async (lookupKey) => {
    const user = newUser();
    const response = await post(user, JSON.stringify({ price: lookupKey }));
    expect(response.status).toBe(200);
    const [session] = await sessionsOf(user);
    expect(session?.params['line_items[0][price]']).toBe(await priceIdOf(lookupKey));
    expect(session?.params['allow_promotion_codes']).toBe('true');
    expect(session?.params['subscription_data[trial_period_days]']).toBe('14');
  });

  it('gives the default price to no body and to {}', async () => {
    const defaultId = await priceIdOf('pro_monthly');
    for (const body of [undefined, '{}']) {
      const user = newUser();
      expect((await post(user, body)).status).toBe(200);
      expect((await sessionsOf(user))[0]?.params['line_items[0][price]']).toBe(defaultId);
    }
  });

  it('answers 400 "Unknown price" to a price not in the catalog, without calling Stripe', async () => {
    for (const body of ['{"price":"enterprise_monthly"}', '{"price":42}', `{"price":"${await priceIdOf('pro_monthly')}"}`]) {
      const user = newUser();
      const response = await post(user, body);
      expect(response.status).toBe(400);
      expectCors(response);
      expect(await response.json()).toEqual({ error: 'Unknown price' });
      expect(await stripeRequests((r) => JSON.stringify(r.params).includes(user.id))).toEqual([]);
    }
  });

  it('refuses a body that is not a JSON object: a price sent broken is never sold as the default', async () => {
    const user = newUser();
    const response = await post(user, 'price=business_yearly');
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'Invalid JSON body' });
    expect(await sessionsOf(user)).toEqual([]);
  });

  it('offers a trial without a card where the plan says so, and says what happens at its end', async () => {
    const pro = newUser();
    await post(pro, '{"price":"pro_monthly"}');
    expect((await sessionsOf(pro))[0]?.params).toMatchObject({
      payment_method_collection: 'if_required',
      'subscription_data[trial_period_days]': '14',
      'subscription_data[trial_settings][end_behavior][missing_payment_method]': 'cancel',
    });
    const business = newUser();
    await post(business, '{"price":"business_monthly"}');
    const params = (await sessionsOf(business))[0]?.params ?? {};
    expect(params['subscription_data[trial_period_days]']).toBe('14');
    expect(params['payment_method_collection']).toBeUndefined();
    expect(params['subscription_data[trial_settings][end_behavior][missing_payment_method]']).toBeUndefined();
  });

  it('offers a trial once per user, ever', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    const t = now();
    await deliver(checkoutCompletedEvent(ids, t - 40 * DAY, user.email));
    await deliver(subscriptionEvent('customer.subscription.created', ids, t - 40 * DAY, {
      status: 'trialing', periodStart: t - 40 * DAY, periodEnd: t - 26 * DAY, trialStart: t - 40 * DAY, trialEnd: t - 26 * DAY, productId: 'analytics_pro',
    }));
    await deliver(subscriptionEvent('customer.subscription.deleted', ids, t - 26 * DAY, {
      status: 'canceled', periodStart: t - 40 * DAY, periodEnd: t - 26 * DAY, trialStart: t - 40 * DAY, trialEnd: t - 26 * DAY, canceledAt: t - 26 * DAY, endedAt: t - 26 * DAY, productId: 'analytics_pro',
    }));
    expect((await post(user, '{"price":"business_yearly"}')).status).toBe(200);
    const [session] = await sessionsOf(user);
    expect(session?.params['subscription_data[trial_period_days]']).toBeUndefined();
    expect(session?.params['payment_method_collection']).toBeUndefined();
  });

  it('a trial without a card that ends without one: Stripe cancels it, and access and features end', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    const t = now();
    const trial = { periodStart: t - 14 * DAY, periodEnd: t, trialStart: t - 14 * DAY, trialEnd: t, productId: 'analytics_pro' };
    await deliver(checkoutCompletedEvent(ids, t - 14 * DAY, user.email));
    await deliver(subscriptionEvent('customer.subscription.created', ids, t - 14 * DAY, { status: 'trialing', ...trial }));
    expect(await status(user)).toMatchObject({ status: 'trialing', access: true, plan: 'pro', features: PRO });
    // end_behavior.missing_payment_method = cancel: at trial_end Stripe cancels the subscription.
    await deliver(subscriptionEvent('customer.subscription.deleted', ids, t, { status: 'canceled', ...trial, canceledAt: t, endedAt: t }));
    expect(await status(user)).toMatchObject({ status: 'canceled', access: false, plan: 'pro', features: [] });
  });
});

describe('GET /api/stripe/plans', () => {
  const get = () => withEnv(catalogEnv(), () => plans(new Request('http://localhost/api/stripe/plans')));

  it('lists the plans with Stripe\'s amounts, trials and features, cacheable', async () => {
    const response = await get();
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('public, max-age=300');
    expect(response.headers.get('access-control-allow-methods')).toBe('GET, OPTIONS');
    const body = (await response.json()) as { defaultPrice: string; plans: { key: string; features: { key: string }[]; trial: unknown; prices: unknown[] }[] };
    expect(body.defaultPrice).toBe('pro_monthly');
    expect(body.plans.map((p) => p.key)).toEqual(['pro', 'business']);
    expect(body.plans[1]?.features.map((f) => f.key)).toEqual(BUSINESS);
    expect(body.plans[0]?.trial).toEqual({ days: 14, cardRequired: false, limits: {} });
    // The shipped catalog's limits and meters (docs/usage.md): a key a plan omits is unlimited on it.
    expect(body).toMatchObject({
      free: { limits: { sites: 1, members: null }, usage: { pageviews: { included: 10_000, overage: 'allow' } } },
      plans: [
        { limits: { members: 3 }, usage: { pageviews: { included: 100_000, overage: 'allow' } } },
        { limits: {}, usage: { pageviews: { included: 1_000_000, overage: 'allow' } } },
      ],
    });
    expect(body.plans[0]?.prices).toEqual([
      { lookupKey: 'pro_monthly', interval: 'month', amount: 900, currency: 'eur' },
      { lookupKey: 'pro_yearly', interval: 'year', amount: 9000, currency: 'eur' },
    ]);

  });

  it('reads Stripe once per cache period, however many ask', async () => {
    // A catalog of its own: other files ask for the shipped catalog's prices meanwhile.
    const { file, tag } = await uniqueCatalog();
    await runSetup(file);
    const reads = async () => (await stripeRequests((r) => r.method === 'GET' && r.path === '/v1/prices' && JSON.stringify(r.params).includes(tag))).length;
    const before = await reads();
    const answers = await Promise.all(Array.from({ length: 5 }, () => withEnv({ BILLING_CATALOG: file }, () => plans(new Request('http://localhost/api/stripe/plans')))));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    for (let i = 0; i < 3; i += 1) expect((await withEnv({ BILLING_CATALOG: file }, () => plans(new Request('http://localhost/api/stripe/plans')))).status).toBe(200);
    expect((await reads()) - before).toBe(1);
  });

  it('without a catalog: no plans, no Stripe call', async () => {
    const response = await withEnv({ BILLING_CATALOG: undefined }, () => plans(new Request('http://localhost/api/stripe/plans')));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ defaultPrice: null, plans: [], free: null });
  });
});

describe('a lookup key sells only our price', () => {
  // Another app on the same Stripe account runs its own setup and takes one of our lookup
  // keys (transfer_lookup_key). Each test has a catalog of its own: taking the shipped
  // catalog's keys would change what the other files sell.
  const MISMATCH = "price under a catalog lookup key is not the catalog's: not for sale";

  /** The JSON lines logged at error while `run` runs. */
  async function errorLines<T>(run: () => Promise<T>): Promise<{ result: T; lines: Record<string, unknown>[] }> {
    const lines: Record<string, unknown>[] = [];
    const errors = vi.spyOn(console, 'error').mockImplementation((line: unknown) => void lines.push(JSON.parse(String(line)) as Record<string, unknown>));
    try {
      return { result: await run(), lines };
    } finally {
      errors.mockRestore();
    }
  }

  const checkoutWith = (file: string, user: TestUser, price: string) =>
    withEnv({ BILLING_CATALOG: file }, () => checkout(authedPost('http://localhost/api/stripe/checkout', user.token, { body: JSON.stringify({ price }) })));
  const plansWith = (file: string) => withEnv({ BILLING_CATALOG: file }, () => plans(new Request('http://localhost/api/stripe/plans')));

  it('checkout answers 500 "Plan unavailable" for a price another app took, logs both prices once per read, and sells the others', async () => {
    const { file, tag } = await uniqueCatalog();
    await runSetup(file);
    const ours = await priceIdOf(`pro_monthly_${tag}`);
    const foreign = await takeLookupKey(`pro_monthly_${tag}`, { product: `other_app_${tag}`, amount: 900, currency: 'eur', interval: 'month' });
    expect(foreign).not.toBe(ours);
    expect(await priceIdOf(`pro_monthly_${tag}`)).toBe(foreign); // the key is the other app's now

    const buyers = [newUser(), newUser()];
    const { result: answers, lines } = await errorLines(async () => {
      const out: Response[] = [];
      for (const buyer of buyers) out.push(await checkoutWith(file, buyer, `pro_monthly_${tag}`));
      return out;
    });
    for (const response of answers) {
      expect(response.status).toBe(500);
      expectCors(response);
      expect(await response.json()).toEqual({ error: 'Plan unavailable' });
    }
    // Refused before a customer or a session is made: nothing reached Stripe for them.
    for (const buyer of buyers) {
      expect(await stripeRequests((r) => JSON.stringify(r.params).includes(buyer.id))).toEqual([]);
      expect(await query('select 1 from billing_customers where user_id = $1', [buyer.id])).toEqual([]);
    }
    // One read of Stripe served both requests: the mismatch is logged once, with both prices.
    expect(lines.filter((l) => l['msg'] === MISMATCH)).toEqual([
      expect.objectContaining({
        level: 'error',
        fn: 'checkout',
        lookupKey: `pro_monthly_${tag}`,
        plan: `pro_${tag}`,
        catalogProduct: `analytics_pro_${tag}`,
        catalogAmount: 900,
        catalogCurrency: 'eur',
        catalogInterval: 'month',
        stripePriceId: foreign,
        stripeProduct: `other_app_${tag}`,
        stripeAmount: 900,
        stripeCurrency: 'eur',
        stripeInterval: 'month',
      }),
    ]);
    expect(lines.filter((l) => l['msg'] === 'request failed')).toEqual([
      expect.objectContaining({ status: 500, errorType: 'PlanUnavailableError' }),
      expect.objectContaining({ status: 500, errorType: 'PlanUnavailableError' }),
    ]);

    // The plan's other price, and the other plan, keep selling.
    for (const lookupKey of [`pro_yearly_${tag}`, `business_monthly_${tag}`]) {
      const buyer = newUser();
      expect((await checkoutWith(file, buyer, lookupKey)).status).toBe(200);
      expect((await sessionsOf(buyer))[0]?.params['line_items[0][price]']).toBe(await priceIdOf(lookupKey));
    }
  });

  it.each([
    ['another product', { product: 'other_app', amount: 900, currency: 'eur', interval: 'month' as const }],
    ['another amount', { product: 'analytics_pro', amount: 100, currency: 'eur', interval: 'month' as const }],
    ['another currency', { product: 'analytics_pro', amount: 900, currency: 'usd', interval: 'month' as const }],
    ['another interval', { product: 'analytics_pro', amount: 900, currency: 'eur', interval: 'year' as const }],
  ])('/plans leaves out the price under our lookup key with %s, and keeps the others', async (_name, taken) => {
    const { file, tag } = await uniqueCatalog();
    await runSetup(file);
    const foreign = await takeLookupKey(`pro_monthly_${tag}`, { ...taken, product: `${taken.product}_${tag}` });
    const { result: response, lines } = await errorLines(() => plansWith(file));
    expect(response.status).toBe(200);
    const body = (await response.json()) as { plans: { key: string; prices: { lookupKey: string }[] }[] };
    expect(body.plans.map((p) => [p.key, p.prices.map((price) => price.lookupKey)])).toEqual([
      [`pro_${tag}`, [`pro_yearly_${tag}`]],
      [`business_${tag}`, [`business_monthly_${tag}`, `business_yearly_${tag}`]],
    ]);
    expect(lines).toEqual([
      expect.objectContaining({ msg: MISMATCH, fn: 'plans', lookupKey: `pro_monthly_${tag}`, stripePriceId: foreign, stripeProduct: `${taken.product}_${tag}`, stripeAmount: taken.amount, stripeCurrency: taken.currency, stripeInterval: taken.interval }),
    ]);
  });

  it.each([
    ['billed every 12 months', { recurring: { interval_count: 12 } }],
    ['metered', { recurring: { usage_type: 'metered' as const } }],
    ['dividing the quantity', { transform_quantity: { divide_by: 1000, round: 'down' as const } }],
  ])('a price with our product, amount, currency and interval but %s is not ours either: checkout answers Plan unavailable', async (_name, shape) => {
    const { file, tag } = await uniqueCatalog();
    await runSetup(file);
    await takeLookupKey(`pro_monthly_${tag}`, { product: `analytics_pro_${tag}`, amount: 900, currency: 'eur', interval: 'month' }, shape);
    const { result: response } = await errorLines(() => checkoutWith(file, newUser(), `pro_monthly_${tag}`));
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ error: 'Plan unavailable' });
  });

  it('a price setup has not made is told apart: checkout answers "Internal server error", /plans leaves it out, no mismatch is logged', async () => {
    const { file, tag } = await uniqueCatalog(); // billing:setup not run
    const { result, lines } = await errorLines(async () => ({ checkout: await checkoutWith(file, newUser(), `pro_monthly_${tag}`), plans: await plansWith(file) }));
    expect(result.checkout.status).toBe(500);
    expect(await result.checkout.json()).toEqual({ error: 'Internal server error' });
    expect(((await result.plans.json()) as { plans: { prices: unknown[] }[] }).plans.map((p) => p.prices)).toEqual([[], []]);
    expect(lines.filter((l) => l['msg'] === MISMATCH)).toEqual([]);
    expect(lines).toEqual([expect.objectContaining({ msg: 'request failed', fn: 'checkout', errorType: 'Error', error: expect.stringContaining('run npm run billing:setup') as unknown })]);
  });
});

describe('GET /api/stripe/subscription knows the plan', () => {
  it('a portal switch (customer.subscription.updated with another price) changes plan, interval and features', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    const t = now();
    const state = { status: 'active' as const, periodStart: t - DAY, periodEnd: t + 29 * DAY };
    await deliver(checkoutCompletedEvent(ids, t - DAY, user.email));
    await deliver(subscriptionEvent('customer.subscription.created', ids, t - DAY, { ...state, priceId: await priceIdOf('pro_monthly'), productId: 'analytics_pro' }));
    expect(await status(user)).toMatchObject({ plan: 'pro', interval: 'month', features: PRO });
    await deliver(subscriptionEvent('customer.subscription.updated', ids, t, { ...state, priceId: await priceIdOf('business_yearly'), productId: 'analytics_business' }));
    expect(await status(user)).toMatchObject({ plan: 'business', interval: 'year', features: BUSINESS });
  });

  it('a downgrade at the period end (a subscription schedule) shows as the scheduled change until it happens', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    const t = now();
    const end = t + 364 * DAY;
    const business = await priceIdOf('business_yearly');
    const pro = await priceIdOf('pro_monthly');
    const state = { status: 'active' as const, periodStart: t - DAY, periodEnd: end, priceId: business, productId: 'analytics_business' };
    await deliver(checkoutCompletedEvent(ids, t - DAY, user.email));
    await deliver(subscriptionEvent('customer.subscription.created', ids, t - DAY, state));
    expect(await status(user)).toMatchObject({ plan: 'business', scheduledChange: null });

    const schedule = {
      id: `sub_sched_${ids.subscriptionId.slice(4)}`,
      status: 'active' as const,
      currentPhase: { start: t - DAY, end },
      phases: [{ priceId: business, start: t - DAY, end }, { priceId: pro, start: end, end: end + 30 * DAY }],
    };
    const created = subscriptionScheduleEvent('subscription_schedule.created', ids, t, schedule);
    await deliver(created);
    expect(await status(user)).toMatchObject({
      plan: 'business',
      features: BUSINESS,
      scheduledChange: { priceId: pro, plan: 'pro', interval: 'month', at: new Date(end * 1000).toISOString() },
    });

    // The period ends: the subscription moves to Pro and Stripe releases the schedule.
    await deliver(subscriptionEvent('customer.subscription.updated', ids, end, { ...state, periodStart: end, periodEnd: end + 30 * DAY, priceId: pro, productId: 'analytics_pro' }));
    await deliver(subscriptionScheduleEvent('subscription_schedule.released', ids, end, { ...schedule, status: 'released', currentPhase: null }));
    expect(await status(user)).toMatchObject({ plan: 'pro', interval: 'month', features: PRO, scheduledChange: null });
    // Its creation, redelivered late, changes nothing.
    await deliver(subscriptionScheduleEvent('subscription_schedule.updated', ids, t + 60, schedule));
    expect(await status(user)).toMatchObject({ scheduledChange: null });
  });

  it('entitlements.active_entitlement_summary.updated, when newer, is what the user has', async () => {
    const user = newUser();
    const ids = newIds(user.id);
    const t = now();
    await deliver(checkoutCompletedEvent(ids, t - DAY, user.email));
    await deliver(subscriptionEvent('customer.subscription.created', ids, t - DAY, { status: 'active', periodStart: t - DAY, periodEnd: t + 29 * DAY, productId: 'analytics_pro' }));
    await deliver(entitlementSummaryEvent(ids.customerId, t, ['api_access', 'unlimited_sites', 'not_in_the_catalog']));
    expect(await status(user)).toMatchObject({ plan: 'pro', features: ['api_access', 'unlimited_sites'] });
    // An older summary, delivered late, changes nothing.
    await deliver(entitlementSummaryEvent(ids.customerId, t - 60, ['custom_events']));
    expect(await status(user)).toMatchObject({ features: ['api_access', 'unlimited_sites'] });
  });
});
