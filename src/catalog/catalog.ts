// The catalog: what this backend sells, as code in the repository (billing-catalog.json
// is the shipped example). Plans, each one Stripe product with prices by interval,
// identified by Stripe lookup keys; an optional trial; the features the plan grants, as
// stable keys that the API, the dashboard and the database's policies all use.
//
// Pure: parsing, validation and lookups. `npm run billing:setup` pushes it to Stripe
// (src/setup/setup.ts); the webhook uses it to know which subscriptions are ours and
// which plan and features they carry. Without a catalog (BILLING_CATALOG unset) the
// backend sells STRIPE_PRICE_ID alone, as it always did.
//
// Limits and usage meters (src/usage/) travel with the plans to the database, which
// enforces them.

import { parseLimits, parseMeters, type Limits, type MeterPrice, type Meters } from './limits.ts';
import { CURRENCY, isObject, KEY, LOOKUP_KEY, PRODUCT_ID } from './syntax.ts';
import { productScope, type ProductScope } from './product-scope.ts';
import type { PriceFacts } from '../stripe/objects.ts';

export const INTERVALS = ['month', 'year'] as const;
export type Interval = (typeof INTERVALS)[number];

/** What Stripe does at the end of a trial that was started without a card
 *  (Checkout's subscription_data.trial_settings.end_behavior.missing_payment_method). */
export const WITHOUT_CARD_BEHAVIORS = ['cancel', 'pause', 'create_invoice'] as const;
export type WithoutCardBehavior = (typeof WITHOUT_CARD_BEHAVIORS)[number];

/** How Stripe bills a change of seats within a period (proration_behavior): invoice items
 *  added to the next invoice, so that membership churn sends no invoice of its own; or
 *  an invoice at once. */
export const PRORATIONS = ['create_prorations', 'always_invoice'] as const;
export type Proration = (typeof PRORATIONS)[number];

/** A plan sold per seat: a team's subscription is billed for max(members, min) seats. */
export interface Seats {
  min: number;
  proration: Proration;
}

export interface CatalogPrice {
  lookupKey: string;
  interval: Interval;
  /** In the currency's smallest unit (cents). */
  amount: number;
  currency: string;
}

export interface Trial {
  days: number;
  /** false: Checkout collects no card (payment_method_collection: if_required). */
  cardRequired: boolean;
  /** For a trial without a card: what happens at its end when none was added. */
  withoutCard: WithoutCardBehavior;
  /** The trial's own limits, over the plan's, while trialing. */
  limits: Limits;
}

export interface Plan {
  key: string;
  name: string;
  description: string | null;
  /** The Stripe product id (set by billing:setup, e.g. analytics_pro). Every price of it
   *  counts as this plan, old prices kept by existing subscribers included. */
  productId: string;
  features: readonly string[];
  trial: Trial | null;
  /** Sold per seat (src/teams/seats.ts); null: one quantity, whoever uses it. */
  seats: Seats | null;
  prices: readonly CatalogPrice[];
  /** A key the plan omits is unlimited on it. */
  limits: Limits;
  usage: Meters;
}

/** What a subject without access gets. Missing, or a key it omits: 0 of every declared
 *  key, never unlimited by accident. */
export interface Free {
  limits: Limits;
  usage: Meters;
}

export interface Catalog {
  /** Where it was read from, for messages. */
  source: string;
  /** The lookup key a checkout without a body subscribes to. */
  defaultPrice: string;
  allowPromotionCodes: boolean;
  automaticTax: boolean;
  /** Feature key -> name shown to people (and given to Stripe Entitlements). */
  features: ReadonlyMap<string, string>;
  /** In the file's order, which is the order a pricing table shows them in. */
  plans: readonly Plan[];
  free: Free | null;
}

export class CatalogError extends Error {
  readonly problems: readonly string[];
  constructor(source: string, problems: readonly string[]) {
    super(`Invalid catalog ${source}: ${problems.join('; ')}`);
    this.name = 'CatalogError';
    this.problems = problems;
  }
}


/** Validates a parsed catalog file, naming every problem at once. */
export function parseCatalog(value: unknown, source: string): Catalog {
  const problems: string[] = [];
  const at = (where: string, problem: string) => problems.push(`${where} ${problem}`);
  if (!isObject(value)) throw new CatalogError(source, ['the file is not a JSON object']);

  const features = new Map<string, string>();
  if (!isObject(value['features'])) at('features', 'must be an object of feature key -> name');
  else {
    for (const [key, name] of Object.entries(value['features'])) {
      if (!KEY.test(key)) at(`features.${key}`, 'is not a key (lowercase letters, digits, _; 40 at most)');
      if (typeof name !== 'string' || name.trim() === '') at(`features.${key}`, 'must be a name');
      else features.set(key, name);
    }
  }

  const plans: Plan[] = [];
  const lookupKeys = new Set<string>();
  const productIds = new Set<string>();
  if (!isObject(value['plans']) || Object.keys(value['plans']).length === 0) at('plans', 'must name at least one plan');
  else {
    for (const [key, raw] of Object.entries(value['plans'])) {
      const where = `plans.${key}`;
      if (!KEY.test(key)) at(where, 'is not a key (lowercase letters, digits, _)');
      if (!isObject(raw)) {
        at(where, 'must be an object');
        continue;
      }
      const name = raw['name'];
      if (typeof name !== 'string' || name.trim() === '') at(`${where}.name`, 'is missing');
      const description = raw['description'];
      if (description !== undefined && typeof description !== 'string') at(`${where}.description`, 'must be text');
      const productId = raw['product'];
      if (typeof productId !== 'string' || !PRODUCT_ID.test(productId)) at(`${where}.product`, 'must be a Stripe product id (letters, digits, _ and -)');
      else if (productIds.has(productId)) at(`${where}.product`, `${productId} is another plan's product`);
      else productIds.add(productId);

      const planFeatures: string[] = [];
      if (!Array.isArray(raw['features'])) at(`${where}.features`, 'must be a list of feature keys');
      else {
        for (const feature of raw['features']) {
          if (typeof feature !== 'string' || !features.has(feature)) at(`${where}.features`, `names ${JSON.stringify(feature)}, which is not in features`);
          else if (!planFeatures.includes(feature)) planFeatures.push(feature);
        }
      }

      const prices: CatalogPrice[] = [];
      if (!isObject(raw['prices']) || Object.keys(raw['prices']).length === 0) at(`${where}.prices`, 'must have a month or a year price');
      else {
        for (const [interval, price] of Object.entries(raw['prices'])) {
          const pw = `${where}.prices.${interval}`;
          if (!(INTERVALS as readonly string[]).includes(interval)) at(pw, 'is not an interval (month, year)');
          if (!isObject(price)) {
            at(pw, 'must be an object');
            continue;
          }
          const { lookupKey, amount, currency } = price;
          if (typeof lookupKey !== 'string' || !LOOKUP_KEY.test(lookupKey)) at(`${pw}.lookupKey`, 'must be a lookup key');
          else if (lookupKeys.has(lookupKey)) at(`${pw}.lookupKey`, `${lookupKey} is used twice`);
          else lookupKeys.add(lookupKey);
          if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount < 0) at(`${pw}.amount`, 'must be a whole number of cents');
          if (typeof currency !== 'string' || !CURRENCY.test(currency)) at(`${pw}.currency`, 'must be a lowercase ISO currency code');
          prices.push({ lookupKey: String(lookupKey), interval: interval as Interval, amount: Number(amount), currency: String(currency) });
        }
      }

      // Parsed before the plan is built, so its billed meters are checked against its
      // prices; in this order, the order problems have always been named in.
      const trial = parseTrial(raw['trial'], `${where}.trial`, at);
      const seats = parseSeats(raw['seats'], `${where}.seats`, at);
      const limits = parseLimits(raw['limits'], `${where}.limits`, at);
      const usage = parseMeters(raw['usage'], `${where}.usage`, at);
      checkBilledMeters(usage, prices, `${where}.usage`, lookupKeys, at);
      plans.push({
        key,
        name: String(name),
        description: typeof description === 'string' ? description : null,
        productId: String(productId),
        features: planFeatures,
        trial,
        seats,
        prices,
        limits,
        usage,
      });
    }
    // A billed meter's price has a product of its own (meterProductId): not a plan's.
    for (const plan of plans) {
      for (const meter of Object.keys(plan.usage).filter((m) => plan.usage[m]?.price)) {
        const id = meterProductId(plan, meter);
        if (!PRODUCT_ID.test(id) || productIds.has(id)) at(`plans.${plan.key}.usage.${meter}`, `needs the product id ${id} for its price, which is not free or too long`);
        else productIds.add(id);
      }
    }
  }

  const defaultPrice = value['defaultPrice'];
  if (typeof defaultPrice !== 'string' || !lookupKeys.has(defaultPrice)) at('defaultPrice', 'must be the lookup key of one of the plans\' prices');
  const checkout = value['checkout'] ?? {};
  if (!isObject(checkout)) at('checkout', 'must be an object');
  const options = isObject(checkout) ? checkout : {};
  for (const option of ['allowPromotionCodes', 'automaticTax']) {
    if (options[option] !== undefined && typeof options[option] !== 'boolean') at(`checkout.${option}`, 'must be true or false');
  }

  const rawFree = value['free'];
  let free: Free | null = null;
  if (rawFree !== undefined && !isObject(rawFree)) at('free', 'must be an object of limits and usage');
  else if (isObject(rawFree)) {
    free = { limits: parseLimits(rawFree['limits'], 'free.limits', at), usage: parseMeters(rawFree['usage'], 'free.usage', at) };
    for (const [meter, { overage }] of Object.entries(free.usage)) {
      if (overage === 'bill') at(`free.usage.${meter}.overage`, 'cannot be "bill": a subject without access has no subscription to bill');
    }
  }

  if (problems.length > 0) throw new CatalogError(source, problems);
  return {
    source,
    defaultPrice: String(defaultPrice),
    allowPromotionCodes: options['allowPromotionCodes'] === true,
    automaticTax: options['automaticTax'] === true,
    features,
    plans,
    free,
  };
}

/** A billed meter's price, against its plan: the plan's currency, a lookup key for each
 *  interval the plan sells and no other (a subscription's items share one interval), and
 *  lookup keys no other price uses. */
function checkBilledMeters(usage: Meters, prices: readonly CatalogPrice[], where: string, lookupKeys: Set<string>, at: (where: string, problem: string) => void): void {
  const intervals = prices.map((p) => p.interval as string);
  for (const [meter, { price }] of Object.entries(usage)) {
    if (!price) continue;
    const pw = `${where}.${meter}.price`;
    if (prices.some((p) => p.currency !== price.currency)) at(`${pw}.currency`, `must be the plan's prices' currency`);
    for (const interval of intervals) if (price.lookupKeys[interval] === undefined) at(`${pw}.lookupKeys`, `lacks the plan's interval ${interval}`);
    for (const [interval, lookupKey] of Object.entries(price.lookupKeys)) {
      if (!intervals.includes(interval)) at(`${pw}.lookupKeys.${interval}`, 'is not an interval the plan sells');
      else if (lookupKeys.has(lookupKey)) at(`${pw}.lookupKeys.${interval}`, `${lookupKey} is used twice`);
      else lookupKeys.add(lookupKey);
    }
  }
}

function parseTrial(raw: unknown, where: string, at: (where: string, problem: string) => void): Trial | null {
  if (raw === undefined || raw === null) return null;
  if (!isObject(raw)) {
    at(where, 'must be an object');
    return null;
  }
  const { days, cardRequired, withoutCard, limits } = raw;
  // Stripe: trial_period_days from 1 to 730.
  if (typeof days !== 'number' || !Number.isInteger(days) || days < 1 || days > 730) at(`${where}.days`, 'must be a whole number from 1 to 730');
  if (typeof cardRequired !== 'boolean') at(`${where}.cardRequired`, 'must be true or false');
  if (withoutCard !== undefined && !(WITHOUT_CARD_BEHAVIORS as readonly unknown[]).includes(withoutCard)) {
    at(`${where}.withoutCard`, `must be one of ${WITHOUT_CARD_BEHAVIORS.join(', ')}`);
  }
  return {
    days: Number(days),
    cardRequired: cardRequired === true,
    withoutCard: (withoutCard as WithoutCardBehavior | undefined) ?? 'cancel',
    limits: parseLimits(limits, `${where}.limits`, at),
  };
}

/** Stripe's largest quantity is far above any team; this only catches a typo. */
const MAX_MIN_SEATS = 10_000;

function parseSeats(raw: unknown, where: string, at: (where: string, problem: string) => void): Seats | null {
  if (raw === undefined || raw === null) return null;
  if (!isObject(raw)) {
    at(where, 'must be an object');
    return null;
  }
  const { min, proration } = raw;
  if (typeof min !== 'number' || !Number.isInteger(min) || min < 1 || min > MAX_MIN_SEATS) at(`${where}.min`, `must be a whole number from 1 to ${MAX_MIN_SEATS}`);
  if (proration !== undefined && !(PRORATIONS as readonly unknown[]).includes(proration)) at(`${where}.proration`, `must be one of ${PRORATIONS.join(', ')}`);
  return { min: Number(min), proration: (proration as Proration | undefined) ?? 'create_prorations' };
}

/** The plan of a Stripe product, if the catalog sells it. */
export function planOfProduct(catalog: Catalog | null, productId: string | null): Plan | null {
  return (productId !== null && catalog?.plans.find((plan) => plan.productId === productId)) || null;
}

export interface PriceInPlan {
  plan: Plan;
  price: CatalogPrice;
}

export function priceByLookupKey(catalog: Catalog, lookupKey: string): PriceInPlan | null {
  for (const plan of catalog.plans) {
    const price = plan.prices.find((p) => p.lookupKey === lookupKey);
    if (price) return { plan, price };
  }
  return null;
}

export function allPrices(catalog: Catalog): PriceInPlan[] {
  return catalog.plans.flatMap((plan) => plan.prices.map((price) => ({ plan, price })));
}

/** A billed meter's metered price for one interval of its plan. */
export interface MeteredPriceInPlan {
  plan: Plan;
  /** The meter's key: the Stripe meter's event_name. */
  meter: string;
  price: MeterPrice;
  interval: Interval;
  lookupKey: string;
  /** The product it is a price of (meterProductId). */
  productId: string;
}

/** The Stripe product of a plan's billed meter: one of its own, so that a subscription's
 *  plan item stays the one item of the plan's product (the stored price, the seats). */
export function meterProductId(plan: Plan, meter: string): string {
  return `${plan.productId}-${meter}`;
}

export function meteredPrices(catalog: Catalog): MeteredPriceInPlan[] {
  return catalog.plans.flatMap((plan) => INTERVALS.flatMap((interval) => billedMeters(plan, interval)));
}

/** The metered prices a subscription to `plan` at `interval` carries beside the plan's price. */
export function billedMeters(plan: Plan, interval: Interval): MeteredPriceInPlan[] {
  return Object.entries(plan.usage).flatMap(([meter, { price }]) => {
    const lookupKey = price?.lookupKeys[interval];
    return price && lookupKey ? [{ plan, meter, price, interval, lookupKey, productId: meterProductId(plan, meter) }] : [];
  });
}

/** The meter keys some plan bills, each once, in the catalog's order. */
export function billedMeterKeys(catalog: Catalog): string[] {
  return [...new Set(meteredPrices(catalog).map((entry) => entry.meter))];
}

/** A price as Stripe holds it, as far as telling whether it is the catalog's needs. */
export interface HeldPrice {
  productId: string;
  /** null for a price without a fixed amount (tiers, customer chooses). */
  amount: number | null;
  currency: string;
  /** null for a one-time price. */
  interval: string | null;
  /** A fixed amount per unit (no tiers) every single interval (no interval_count above 1). */
  perUnitEachInterval: boolean;
  usageType: 'licensed' | 'metered';
  /** A metered price's Stripe meter id. */
  meterId: string | null;
  /** transform_quantity: bill per package of divideBy units, rounded `round`. */
  transform: { divideBy: number; round: string } | null;
}

/** Whether the price Stripe holds under a catalog lookup key is the catalog's: its plan's
 *  product, amount, currency and interval, licensed and billed per unit each interval. A
 *  lookup key is unique per Stripe account, not per app, so another app's setup on the
 *  account can take ours (transfer_lookup_key). */
export function isCatalogPrice({ plan, price }: PriceInPlan, held: HeldPrice): boolean {
  return (
    held.productId === plan.productId &&
    held.amount === price.amount &&
    held.currency === price.currency &&
    held.interval === price.interval &&
    held.perUnitEachInterval &&
    held.usageType === 'licensed' &&
    held.transform === null
  );
}

/** The same for a billed meter's price: its product, amount, currency and interval,
 *  metered on the meter of the meter's key (`meterId`: null when Stripe has none, so no
 *  price matches), per package of `per` units rounded up (no transform for 1). */
export function isCatalogMeteredPrice(entry: MeteredPriceInPlan, held: HeldPrice, meterId: string | null): boolean {
  const { price } = entry;
  const transform = held.transform;
  return (
    held.productId === entry.productId &&
    held.amount === price.amount &&
    held.currency === price.currency &&
    held.interval === entry.interval &&
    held.perUnitEachInterval &&
    held.usageType === 'metered' &&
    meterId !== null &&
    held.meterId === meterId &&
    (price.per === 1 ? transform === null : transform?.divideBy === price.per && transform.round === 'up')
  );
}

/** The plan a subscription's price belongs to: by its lookup key, else by its product
 *  (a price that lost its lookup key to a newer amount is still the plan's). */
export function planOfPrice(catalog: Catalog, price: PriceFacts): { plan: Plan; interval: Interval | null } | null {
  if (price.lookupKey) {
    const found = priceByLookupKey(catalog, price.lookupKey);
    if (found) return { plan: found.plan, interval: found.price.interval };
  }
  const plan = catalog.plans.find((p) => p.productId === price.productId);
  if (!plan) return null;
  const interval = price.interval === 'month' || price.interval === 'year' ? price.interval : null;
  return { plan, interval };
}

/** What this backend sells with a catalog: every plan's product, plus what the seed's
 *  variables name (subscribers of the price sold before the catalog keep counting). */
export function catalogScope(catalog: Catalog, legacy: ProductScope): ProductScope {
  return productScope([...legacy.priceIds], [...legacy.productIds, ...catalog.plans.map((plan) => plan.productId)], catalog);
}
