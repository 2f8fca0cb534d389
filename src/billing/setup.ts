// npm run billing:setup: push the catalog to a Stripe account, idempotently. Each step
// reads what the account has, compares it with the catalog, and changes only what
// differs, so a second run changes nothing (test or live key alike):
//
//   features   Entitlements features, one per catalog feature, lookup_key = its key
//   products   one per plan, with the plan's id (Stripe lets us choose product ids)
//   product features   the plan's features attached to its product, others detached
//   prices     one per plan and interval, lookup_key from the catalog. Stripe never
//              changes a price's amount: a changed amount, currency or interval makes
//              a new price that takes the lookup key over (transfer_lookup_key), and
//              the old one is archived (its subscribers keep it until they switch)
//   portal     the account's default billing-portal configuration: switch between the
//              catalog's prices (upgrades prorated and invoiced now, downgrades and
//              shorter intervals at period end), cancel at period end
//   webhook    the endpoint for <URL>/api/stripe/webhook with exactly the handled
//              events and the pinned API version; its signing secret, shown once
//   database   the plans, their features and price ids (billing_sync_catalog), which
//              the SQL functions and the status endpoint read
//
// With dryRun, nothing is written anywhere: the report lists what would change.

import type Stripe from 'stripe';
import type { BillingStore, StoredCatalog } from '../store.ts';
import { PINNED_API_VERSION } from './api-version.ts';
import { allPrices, isCatalogPrice, type Catalog, type Plan } from './catalog.ts';
import { HANDLED_EVENT_TYPES } from './events.ts';
import { heldPrice } from './prices.ts';
import { dashboardUrl } from './urls.ts';

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
  /** The new webhook endpoint's signing secret: Stripe shows it only when it is created. */
  webhookSecret: string | null;
  webhookEndpointId: string | null;
}

/** Marks what billing:setup made, for people looking at the Stripe Dashboard. */
const MANAGED = { managed_by: 'billing:setup' };

export const WEBHOOK_PATH = '/api/stripe/webhook';

export function webhookEvents(): Stripe.WebhookEndpointCreateParams.EnabledEvent[] {
  return [...HANDLED_EVENT_TYPES].sort();
}

export async function setupStripe(deps: SetupDeps, options: { dryRun?: boolean } = {}): Promise<SetupReport> {
  const dryRun = options.dryRun ?? false;
  const report: SetupReport = { dryRun, changes: [], webhookSecret: null, webhookEndpointId: null };
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
  for (const plan of catalog.plans) {
    const product = await retrieveProduct(stripe, plan.productId);
    const description = plan.description ?? undefined;
    if (!product) {
      change(`create product ${plan.productId} (${plan.name})`);
      if (!dryRun) {
        await stripe.products.create({ id: plan.productId, name: plan.name, ...(description && { description }), metadata: { ...MANAGED, plan: plan.key } });
      }
    } else if (product.name !== plan.name || (product.description ?? undefined) !== description || !product.active || product.metadata['plan'] !== plan.key) {
      change(`update product ${plan.productId} (${plan.name})`);
      if (!dryRun) {
        await stripe.products.update(plan.productId, { name: plan.name, description: description ?? '', active: true, metadata: { ...MANAGED, plan: plan.key } });
      }
    }
    await attachFeatures(deps, plan, product !== null, featureIds, dryRun, change);
  }

  // Prices ----------------------------------------------------------------------------
  const wanted = allPrices(catalog);
  const existingPrices = new Map<string, Stripe.Price>();
  for (let i = 0; i < wanted.length; i += 10) {
    const keys = wanted.slice(i, i + 10).map(({ price }) => price.lookupKey);
    const page = await stripe.prices.list({ lookup_keys: keys, limit: 100 });
    for (const price of page.data) if (price.lookup_key && keys.includes(price.lookup_key)) existingPrices.set(price.lookup_key, price);
  }
  const priceIds = new Map<string, string>();
  const ourProducts = new Set(catalog.plans.map((plan) => plan.productId));
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
