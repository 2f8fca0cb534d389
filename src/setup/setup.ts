// npm run billing:setup: push the catalog to a Stripe account, idempotently. Each step
// reads what the account has, compares it with the catalog, and changes only what
// differs, so a second run changes nothing (test or live key alike):
//
//   features   Entitlements features, one per catalog feature, lookup_key = its key
//   products   one per plan, with the plan's id (Stripe lets us choose product ids)
//   product features   the plan's features attached to its product, others detached
//   meters     for a billed meter (overage "bill"): one Stripe meter per meter key,
//              event_name = the key, summing payload.value per customer (meters.ts);
//              found by event_name (Stripe's list has no such filter: one walk), an
//              inactive one reactivated, a differing one refused (Stripe cannot change it)
//   prices     one per plan and interval, lookup_key from the catalog. Stripe never
//              changes a price's amount: a changed amount, currency or interval makes
//              a new price that takes the lookup key over (transfer_lookup_key), and
//              the old one is archived (its subscribers keep it until they switch).
//              A billed meter's metered price per plan interval, the same way, on a
//              product of its own (meterProductId) and the meter
//   portal     the account's default billing-portal configuration: switch between the
//              catalog's prices (upgrades prorated and invoiced now, downgrades and
//              shorter intervals at period end), cancel at period end
//   webhook    the endpoint for <URL>/api/stripe/webhook with exactly the handled
//              events (and invoice.created when a meter is billed) and the pinned API
//              version; its signing secret, shown once
//   database   the plans, their features and price ids (billing_sync_catalog), which
//              the SQL functions and the status endpoint read
//
// With dryRun, nothing is written anywhere: the report lists what would change.
//
// Subscriptions that exist before a meter is billed have no metered item: the report
// says how many, and addMeteredItems (billing:setup --add-metered-items) adds them.

import type Stripe from 'stripe';
import type { BillingStore, StoredCatalog } from '../database/store.ts';
import { PINNED_API_VERSION } from '../stripe/api-version.ts';
import {
  allPrices,
  billedMeterKeys,
  billedMeters,
  isCatalogMeteredPrice,
  isCatalogPrice,
  meteredPrices,
  meterProductId,
  planOfPrice,
  type Catalog,
  type Plan,
} from '../catalog/catalog.ts';
import { HANDLED_EVENT_TYPES } from '../events/reduce.ts';
import { countsAsOurs, findMeters, meterCreateParams } from '../catalog/meters.ts';
import { heldPrice } from '../catalog/prices.ts';
import { dashboardUrl } from '../accounts/urls.ts';

export interface SetupDeps {
  stripe: Stripe;
  store: BillingStore;
  catalog: Catalog;
  appUrl: URL;
}

export interface SetupReport {
  dryRun: boolean;
  /** One line per change made (or, in a dry run, that would be made). */
  changes: string[];
  /** What a person must do next (a metered price new to existing subscribers). */
  next: string[];
  /** The new webhook endpoint's signing secret: Stripe shows it only when it is created. */
  webhookSecret: string | null;
  webhookEndpointId: string | null;
}

/** Marks what billing:setup made, for people looking at the Stripe Dashboard. */
const MANAGED = { managed_by: 'billing:setup' };

export const WEBHOOK_PATH = '/api/stripe/webhook';

/** The events the endpoint receives: the handled ones (invoice.created among them: a
 *  metered invoice's draft, which the usage reporter completes before Stripe finalizes
 *  it; for a catalog that bills no meter it is acknowledged and skipped). */
export function webhookEvents(): Stripe.WebhookEndpointCreateParams.EnabledEvent[] {
  return [...HANDLED_EVENT_TYPES].sort();
}

export async function setupStripe(deps: SetupDeps, options: { dryRun?: boolean } = {}): Promise<SetupReport> {
  const dryRun = options.dryRun ?? false;
  const report: SetupReport = { dryRun, changes: [], next: [], webhookSecret: null, webhookEndpointId: null };
  const change = (line: string) => report.changes.push(line);
  const { stripe, catalog } = deps;

  // Features ---------------------------------------------------------------------------
  const featureIds = new Map<string, string>();
  const existingFeatures: Stripe.Entitlements.Feature[] = [];
  for await (const feature of stripe.entitlements.features.list({ limit: 100 })) existingFeatures.push(feature);
  for (const [key, name] of catalog.features) {
    const found = existingFeatures.find((f) => f.lookup_key === key);
    if (!found) {
      change(`create feature ${key} (${name})`);
      if (!dryRun) featureIds.set(key, (await stripe.entitlements.features.create({ lookup_key: key, name, metadata: MANAGED })).id);
      continue;
    }
    featureIds.set(key, found.id);
    if (found.name !== name || !found.active) {
      change(`update feature ${key} (${name})`);
      if (!dryRun) await stripe.entitlements.features.update(found.id, { name, active: true });
    }
  }

  // Products and their features ---------------------------------------------------------
  const ensureProduct = async (id: string, name: string, description: string | undefined, metadata: Record<string, string>): Promise<boolean> => {
    const product = await retrieveProduct(stripe, id);
    if (!product) {
      change(`create product ${id} (${name})`);
      if (!dryRun) await stripe.products.create({ id, name, ...(description && { description }), metadata: { ...MANAGED, ...metadata } });
    } else if (
      product.name !== name ||
      (product.description ?? undefined) !== description ||
      !product.active ||
      Object.entries(metadata).some(([key, value]) => product.metadata[key] !== value)
    ) {
      change(`update product ${id} (${name})`);
      if (!dryRun) await stripe.products.update(id, { name, description: description ?? '', active: true, metadata: { ...MANAGED, ...metadata } });
    }
    return product !== null;
  };
  for (const plan of catalog.plans) {
    const exists = await ensureProduct(plan.productId, plan.name, plan.description ?? undefined, { plan: plan.key });
    await attachFeatures(deps, plan, exists, featureIds, dryRun, change);
  }
  // A billed meter's product: the name its invoice line shows.
  for (const plan of catalog.plans) {
    for (const meter of Object.keys(plan.usage).filter((key) => plan.usage[key]?.price)) {
      await ensureProduct(meterProductId(plan, meter), `${plan.name}: ${meter} past the included amount`, undefined, { plan: plan.key, meter });
    }
  }

  // Meters ------------------------------------------------------------------------------
  const meterIds = new Map<string, string>();
  const meterKeys = billedMeterKeys(catalog);
  const meters = await findMeters(stripe, meterKeys);
  for (const key of meterKeys) {
    const found = meters.get(key);
    if (!found) {
      change(`create meter ${key} (sum of payload.value per payload.stripe_customer_id)`);
      if (!dryRun) meterIds.set(key, (await stripe.billing.meters.create(meterCreateParams(key))).id);
      continue;
    }
    if (!countsAsOurs(found)) {
      throw new Error(
        `meter ${found.id} (event_name ${key}) does not sum payload.value per payload.stripe_customer_id, and Stripe cannot change that: ` +
          'deactivate it and give the catalog meter another key, or remove it',
      );
    }
    meterIds.set(key, found.id);
    if (found.status !== 'active') {
      change(`reactivate meter ${key} (${found.id})`);
      if (!dryRun) await stripe.billing.meters.reactivate(found.id);
    }
  }

  // Prices ----------------------------------------------------------------------------
  const wanted = allPrices(catalog);
  const metered = meteredPrices(catalog);
  const allKeys = [...wanted.map(({ price }) => price.lookupKey), ...metered.map((entry) => entry.lookupKey)];
  const existingPrices = new Map<string, Stripe.Price>();
  for (let i = 0; i < allKeys.length; i += 10) {
    const keys = allKeys.slice(i, i + 10);
    const page = await stripe.prices.list({ lookup_keys: keys, limit: 100 });
    for (const price of page.data) if (price.lookup_key && keys.includes(price.lookup_key)) existingPrices.set(price.lookup_key, price);
  }
  const priceIds = new Map<string, string>();
  const ourProducts = new Set([...catalog.plans.map((plan) => plan.productId), ...metered.map((entry) => entry.productId)]);
  for (const { plan, price } of wanted) {
    const found = existingPrices.get(price.lookupKey);
    if (found && found.active && isCatalogPrice({ plan, price }, heldPrice(found))) {
      priceIds.set(price.lookupKey, found.id);
      continue;
    }
    const what = `${price.lookupKey} (${price.amount} ${price.currency}/${price.interval}, ${plan.productId})`;
    change(found ? `create price ${what}, taking the lookup key from ${found.id}, and archive ${found.id}` : `create price ${what}`);
    if (dryRun) continue;
    const created = await stripe.prices.create({
      product: plan.productId,
      currency: price.currency,
      unit_amount: price.amount,
      recurring: { interval: price.interval },
      lookup_key: price.lookupKey,
      ...(found && { transfer_lookup_key: true }),
      nickname: `${plan.name}, ${price.interval === 'month' ? 'monthly' : 'yearly'}`,
      metadata: { ...MANAGED, plan: plan.key },
    });
    priceIds.set(price.lookupKey, created.id);
    // Only a price of one of our products is ours to retire: one another app on the same
    // account holds under this key keeps selling there (it only loses the key).
    if (found && ourProducts.has(heldPrice(found).productId)) await stripe.prices.update(found.id, { active: false });
  }
  const newMetered: string[] = [];
  for (const entry of metered) {
    const { plan, price, interval, lookupKey } = entry;
    const meterId = meterIds.get(entry.meter) ?? null;
    const found = existingPrices.get(lookupKey);
    if (found && found.active && isCatalogMeteredPrice(entry, heldPrice(found), meterId)) continue;
    const per = price.per === 1 ? 'unit' : `${price.per} units`;
    const what = `${lookupKey} (${price.amount} ${price.currency} per ${per} of ${entry.meter} past ${plan.usage[entry.meter]?.included ?? 0}, metered, /${interval}, ${entry.productId})`;
    change(found ? `create price ${what}, taking the lookup key from ${found.id}, and archive ${found.id}` : `create price ${what}`);
    newMetered.push(lookupKey);
    if (dryRun || meterId === null) continue;
    await stripe.prices.create({
      product: entry.productId,
      currency: price.currency,
      unit_amount: price.amount,
      recurring: { interval, usage_type: 'metered', meter: meterId },
      ...(price.per > 1 && { transform_quantity: { divide_by: price.per, round: 'up' as const } }),
      lookup_key: lookupKey,
      ...(found && { transfer_lookup_key: true }),
      nickname: `${plan.name}, ${entry.meter} past the included amount, ${interval === 'month' ? 'monthly' : 'yearly'}`,
      metadata: { ...MANAGED, plan: plan.key, meter: entry.meter },
    });
    if (found && ourProducts.has(heldPrice(found).productId)) await stripe.prices.update(found.id, { active: false });
  }

  if (newMetered.length > 0) {
    report.next.push(
      `subscriptions that started before ${newMetered.join(', ')} existed have no item of it, so Stripe bills them no overage: ` +
        'npm run billing:setup -- --add-metered-items adds it to each active, trialing and past_due one (safe to repeat: it adds only what is missing)',
    );
  }

  // The billing portal ------------------------------------------------------------------
  const portal = portalConfiguration(deps, priceIds);
  const [current] = (await stripe.billingPortal.configurations.list({ is_default: true, limit: 1 })).data;
  if (!current) {
    change('create billing portal configuration (plan switches, cancel at period end)');
    if (!dryRun) await stripe.billingPortal.configurations.create(portal);
  } else if (!samePortal(current, portal)) {
    change(`update billing portal configuration ${current.id} (plan switches, cancel at period end)`);
    if (!dryRun) await stripe.billingPortal.configurations.update(current.id, portal);
  }

  // The webhook endpoint ----------------------------------------------------------------
  const url = new URL(WEBHOOK_PATH, deps.appUrl).href;
  const events = webhookEvents();
  const endpoints: Stripe.WebhookEndpoint[] = [];
  for await (const endpoint of stripe.webhookEndpoints.list({ limit: 100 })) endpoints.push(endpoint);
  const mine = endpoints.filter((e) => e.url === url);
  const onVersion = mine.find((e) => e.api_version === PINNED_API_VERSION);
  if (!onVersion) {
    const older = mine.map((e) => `${e.id} (${e.api_version ?? 'account default'})`).join(', ');
    change(
      `create webhook endpoint ${url} on ${PINNED_API_VERSION} with ${events.length} events` +
        (older ? `; ${older} stays: put both signing secrets in STRIPE_WEBHOOK_SECRET, then delete it` : ''),
    );
    if (!dryRun) {
      const created = await stripe.webhookEndpoints.create({
        url,
        enabled_events: events,
        api_version: PINNED_API_VERSION,
        description: 'Billing backend (billing:setup)',
        metadata: MANAGED,
      });
      report.webhookSecret = created.secret ?? null;
      report.webhookEndpointId = created.id;
    }
  } else {
    report.webhookEndpointId = onVersion.id;
    const same = onVersion.enabled_events.length === events.length && events.every((e) => onVersion.enabled_events.includes(e));
    if (!same || onVersion.status !== 'enabled') {
      change(`update webhook endpoint ${onVersion.id}: exactly the ${events.length} handled events, enabled`);
      if (!dryRun) await stripe.webhookEndpoints.update(onVersion.id, { enabled_events: events, disabled: false });
    }
  }

  // The database ------------------------------------------------------------------------
  if (!dryRun) await deps.store.syncCatalog(storedCatalog(catalog, priceIds));
  else change('store the plans, features and price ids in the database');
  return report;
}

async function retrieveProduct(stripe: Stripe, id: string): Promise<Stripe.Product | null> {
  try {
    return await stripe.products.retrieve(id);
  } catch (error) {
    if ((error as { statusCode?: unknown }).statusCode === 404) return null;
    throw error;
  }
}

async function attachFeatures(
  deps: SetupDeps,
  plan: Plan,
  productExists: boolean,
  featureIds: ReadonlyMap<string, string>,
  dryRun: boolean,
  change: (line: string) => void,
): Promise<void> {
  const attached: Stripe.ProductFeature[] = [];
  if (productExists) for await (const pf of deps.stripe.products.listFeatures(plan.productId, { limit: 100 })) attached.push(pf);
  const attachedKeys = new Set(attached.map((pf) => pf.entitlement_feature.lookup_key));
  for (const key of plan.features) {
    if (attachedKeys.has(key)) continue;
    change(`attach feature ${key} to ${plan.productId}`);
    const featureId = featureIds.get(key);
    if (!dryRun && featureId) await deps.stripe.products.createFeature(plan.productId, { entitlement_feature: featureId });
  }
  // Only the catalog's features are managed here: one attached by hand stays.
  for (const pf of attached) {
    const key = pf.entitlement_feature.lookup_key;
    if (plan.features.includes(key) || !deps.catalog.features.has(key)) continue;
    change(`detach feature ${pf.entitlement_feature.lookup_key} from ${plan.productId}`);
    if (!dryRun) await deps.stripe.products.deleteFeature(plan.productId, pf.id);
  }
}

function portalConfiguration(deps: SetupDeps, priceIds: ReadonlyMap<string, string>): Stripe.BillingPortal.ConfigurationCreateParams {
  return {
    default_return_url: dashboardUrl(deps.appUrl, {}),
    features: {
      customer_update: { enabled: true, allowed_updates: ['email', 'address', 'tax_id'] },
      invoice_history: { enabled: true },
      payment_method_update: { enabled: true },
      subscription_cancel: { enabled: true, mode: 'at_period_end' },
      subscription_update: {
        enabled: true,
        // Not 'quantity': a per-seat plan's quantity follows the team's members (src/teams/seats.ts).
        default_allowed_updates: ['price'],
        // Upgrades: prorated, and invoiced (charged) at once.
        proration_behavior: 'always_invoice',
        products: deps.catalog.plans.map((plan) => ({
          product: plan.productId,
          prices: plan.prices.flatMap((p) => priceIds.get(p.lookupKey) ?? []),
        })),
        // Downgrades (a smaller amount) and a shorter interval wait for the period's end.
        schedule_at_period_end: { conditions: [{ type: 'decreasing_item_amount' }, { type: 'shortening_interval' }] },
      },
    },
    metadata: MANAGED,
  };
}

function samePortal(current: Stripe.BillingPortal.Configuration, wanted: Stripe.BillingPortal.ConfigurationCreateParams): boolean {
  const update = current.features.subscription_update;
  const wantedUpdate = wanted.features.subscription_update;
  const products = (list: readonly { product: string; prices: readonly string[] }[] | null | undefined) =>
    JSON.stringify((list ?? []).map((p) => [p.product, [...p.prices].sort()]).sort());
  const conditions = (update.schedule_at_period_end?.conditions ?? []).map((c) => c.type).sort().join(',');
  return (
    update.enabled &&
    update.proration_behavior === wantedUpdate?.proration_behavior &&
    products(update.products) === products(Array.isArray(wantedUpdate?.products) ? wantedUpdate.products : []) &&
    conditions === 'decreasing_item_amount,shortening_interval' &&
    current.features.subscription_cancel.enabled &&
    current.features.subscription_cancel.mode === 'at_period_end' &&
    current.default_return_url === wanted.default_return_url
  );
}

export function storedCatalog(catalog: Catalog, priceIds: ReadonlyMap<string, string>): StoredCatalog {
  return {
    plans: catalog.plans.map((plan) => ({
      plan: plan.key,
      product_id: plan.productId,
      name: plan.name,
      features: [...plan.features],
      limits: { ...plan.limits },
      trial_limits: { ...plan.trial?.limits },
      usage: { ...plan.usage },
    })),
    prices: allPrices(catalog).flatMap(({ plan, price }) => {
      const id = priceIds.get(price.lookupKey);
      return id
        ? [{ price_id: id, plan: plan.key, lookup_key: price.lookupKey, interval: price.interval, amount: price.amount, currency: price.currency }]
        : [];
    }),
    free: catalog.free && { limits: { ...catalog.free.limits }, usage: { ...catalog.free.usage } },
  };
}

export interface MeteredItemsReport {
  dryRun: boolean;
  /** One line per item added (or, in a dry run, that would be added). */
  changes: string[];
  /** Subscriptions whose item on a billed meter has another price (a plan switched in
   *  the portal keeps the old plan's): left as they are, for a person to decide. */
  otherPrice: string[];
  /** Subscriptions read. */
  subscriptions: number;
}

/** Subscriptions that bill usage now or later: the ones a metered item belongs on. */
const METERED_ITEM_STATUSES = ['active', 'trialing', 'past_due'] as const;

/**
 * billing:setup --add-metered-items: gives every active, trialing or past_due
 * subscription to a plan that bills a meter the metered price of its plan and interval,
 * as Checkout does for new ones. Idempotent: a subscription with an item on the meter
 * gets nothing, and each add carries an idempotency key of the subscription and price.
 * No proration: a metered item bills only usage reported after it exists.
 */
export async function addMeteredItems(deps: Pick<SetupDeps, 'stripe' | 'catalog'>, options: { dryRun?: boolean } = {}): Promise<MeteredItemsReport> {
  const dryRun = options.dryRun ?? false;
  const { stripe, catalog } = deps;
  const report: MeteredItemsReport = { dryRun, changes: [], otherPrice: [], subscriptions: 0 };
  const metered = meteredPrices(catalog);
  if (metered.length === 0) return report;

  const meters = await findMeters(stripe, billedMeterKeys(catalog));
  const priceIds = new Map<string, string>();
  for (let i = 0; i < metered.length; i += 10) {
    const entries = metered.slice(i, i + 10);
    const page = await stripe.prices.list({ lookup_keys: entries.map((entry) => entry.lookupKey), active: true, limit: 100 });
    for (const entry of entries) {
      const meter = meters.get(entry.meter);
      const price = page.data.find((p) => p.lookup_key === entry.lookupKey);
      if (price && meter?.status === 'active' && isCatalogMeteredPrice(entry, heldPrice(price), meter.id)) priceIds.set(entry.lookupKey, price.id);
    }
  }
  const missing = metered.filter((entry) => !priceIds.has(entry.lookupKey)).map((entry) => entry.lookupKey);
  if (missing.length > 0) throw new Error(`the metered prices ${missing.join(', ')} are not in Stripe as the catalog says: run npm run billing:setup first`);

  for (const status of METERED_ITEM_STATUSES) {
    for await (const subscription of stripe.subscriptions.list({ status, limit: 100 })) {
      report.subscriptions += 1;
      const items = subscription.items.data;
      // The plan's item: licensed, of a plan's product (the metered ones have their own).
      const planItem = items.find((item) => heldPrice(item.price).usageType === 'licensed' && planOfPrice(catalog, priceFactsOf(item.price)) !== null);
      const found = planItem && planOfPrice(catalog, priceFactsOf(planItem.price));
      if (!planItem || !found?.interval) continue;
      for (const entry of billedMeters(found.plan, found.interval)) {
        const priceId = priceIds.get(entry.lookupKey) ?? '';
        const meterId = meters.get(entry.meter)?.id ?? null;
        const onMeter = items.find((item) => heldPrice(item.price).meterId === meterId);
        if (onMeter) {
          if (onMeter.price.id !== priceId) report.otherPrice.push(`${subscription.id}: ${entry.meter} item ${onMeter.id} has ${onMeter.price.id}, not ${entry.lookupKey} (${priceId})`);
          continue;
        }
        report.changes.push(`add ${entry.lookupKey} (${priceId}) to ${subscription.id} (${found.plan.key}, ${status})`);
        if (dryRun) continue;
        await stripe.subscriptionItems.create(
          { subscription: subscription.id, price: priceId, proration_behavior: 'none' },
          { idempotencyKey: `billing-metered-item-${subscription.id}-${priceId}` },
        );
      }
    }
  }
  return report;
}

function priceFactsOf(price: Stripe.Price): { id: string; productId: string; lookupKey: string | null; interval: string | null } {
  const held = heldPrice(price);
  return { id: price.id, productId: held.productId, lookupKey: price.lookup_key, interval: held.interval };
}
