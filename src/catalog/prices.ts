// The catalog's prices as Stripe holds them: their ids (a checkout needs one) and their
// amounts, currencies and intervals. One list call per TTL for all of them, by lookup
// key; shared by whoever asks in between.
//
// A lookup key finds whatever price holds it on the account, and another app on the
// same account can take ours over (transfer_lookup_key). So a price is for sale only
// when it is the catalog's (its plan's product, amount, currency and interval); any
// other is left out and logged at error once per read, with both prices.

import type Stripe from 'stripe';
import type { Logger } from '../core/log.ts';
import type { StripeLoader } from '../stripe/client.ts';
import type { Catalog, HeldPrice, MeteredPriceInPlan, PriceInPlan } from './catalog.ts';
import { allPrices, billedMeterKeys, isCatalogMeteredPrice, isCatalogPrice, meteredPrices } from './catalog.ts';
import { findMeters } from './meters.ts';

/** How long an answer from Stripe is reused. /plans tells browsers and CDNs the same. */
export const PRICES_TTL_MS = 5 * 60_000;
/** Stripe's limit of lookup_keys per list call. */
const LOOKUP_KEYS_PER_CALL = 10;

export interface StripePrice {
  lookupKey: string;
  plan: string;
  priceId: string;
  amount: number | null;
  currency: string;
  interval: string;
}

/** One read of the catalog's prices in Stripe: its plans' and its billed meters'. A
 *  lookup key in neither is not in Stripe (billing:setup has not made it). */
export interface PricesInStripe {
  /** The catalog's prices, by lookup key: for sale. */
  forSale: ReadonlyMap<string, StripePrice>;
  /** Lookup keys under which Stripe holds a price that is not the catalog's: not for sale. */
  mismatched: ReadonlySet<string>;
}

export interface CatalogPrices {
  get(): Promise<PricesInStripe>;
}

export interface CatalogPricesOptions {
  /** Where a mismatch is reported (no request is in scope: one read serves many). */
  log: Logger;
  ttlMs?: number;
  now?: () => number;
}

export function catalogPrices(stripe: StripeLoader, catalog: Catalog, options: CatalogPricesOptions): CatalogPrices {
  const { log } = options;
  const ttl = options.ttlMs ?? PRICES_TTL_MS;
  const now = options.now ?? Date.now;
  let cached: { at: number; prices: Promise<PricesInStripe> } | undefined;
  // The plans' prices and the billed meters' metered prices, by lookup key.
  type Wanted = { kind: 'plan'; entry: PriceInPlan } | { kind: 'metered'; entry: MeteredPriceInPlan };
  const wanted = new Map<string, Wanted>([
    ...allPrices(catalog).map((entry): [string, Wanted] => [entry.price.lookupKey, { kind: 'plan', entry }]),
    ...meteredPrices(catalog).map((entry): [string, Wanted] => [entry.lookupKey, { kind: 'metered', entry }]),
  ]);
  const meterKeys = billedMeterKeys(catalog);

  const fetchAll = async (): Promise<PricesInStripe> => {
    const client = await stripe();
    const keys = [...wanted.keys()];
    const forSale = new Map<string, StripePrice>();
    const mismatched = new Set<string>();
    // A metered price is ours only on our meter: one more read, for a catalog that bills.
    const meters = await findMeters(client, meterKeys);
    for (let i = 0; i < keys.length; i += LOOKUP_KEYS_PER_CALL) {
      const page = await client.prices.list({ lookup_keys: keys.slice(i, i + LOOKUP_KEYS_PER_CALL), active: true, limit: 100 });
      for (const price of page.data) {
        const want = price.lookup_key ? wanted.get(price.lookup_key) : undefined;
        if (!price.lookup_key || !want) continue;
        const held = heldPrice(price);
        const { plan } = want.entry;
        const catalogPrice =
          want.kind === 'plan'
            ? { product: plan.productId, amount: want.entry.price.amount, currency: want.entry.price.currency, interval: want.entry.price.interval }
            : { product: want.entry.productId, amount: want.entry.price.amount, currency: want.entry.price.currency, interval: want.entry.interval };
        const meter = want.kind === 'metered' ? (meters.get(want.entry.meter) ?? null) : null;
        const ours =
          want.kind === 'plan'
            ? isCatalogPrice(want.entry, held)
            : isCatalogMeteredPrice(want.entry, held, meter?.status === 'active' ? meter.id : null);
        if (!ours) {
          mismatched.add(price.lookup_key);
          log.error('price under a catalog lookup key is not the catalog\'s: not for sale', {
            lookupKey: price.lookup_key,
            plan: plan.key,
            catalogProduct: catalogPrice.product,
            catalogAmount: catalogPrice.amount,
            catalogCurrency: catalogPrice.currency,
            catalogInterval: catalogPrice.interval,
            ...(want.kind === 'metered' && { catalogMeter: want.entry.meter, catalogPer: want.entry.price.per, stripeMeter: held.meterId }),
            stripePriceId: price.id,
            stripeProduct: held.productId,
            stripeAmount: held.amount,
            stripeCurrency: held.currency,
            stripeInterval: held.interval,
          });
          continue;
        }
        forSale.set(price.lookup_key, {
          lookupKey: price.lookup_key,
          plan: plan.key,
          priceId: price.id,
          amount: held.amount,
          currency: held.currency,
          interval: catalogPrice.interval,
        });
      }
    }
    return { forSale, mismatched };
  };

  return {
    get() {
      const at = now();
      if (!cached || at - cached.at >= ttl) {
        const prices = fetchAll();
        cached = { at, prices };
        prices.catch(() => {
          if (cached?.prices === prices) cached = undefined; // a failure is not cached
        });
      }
      return cached.prices;
    },
  };
}

/** What isCatalogPrice compares, from a Stripe price (its product an id or expanded). */
export function heldPrice(price: Stripe.Price): HeldPrice {
  return {
    productId: typeof price.product === 'string' ? price.product : price.product.id,
    amount: price.unit_amount,
    currency: price.currency,
    interval: price.recurring?.interval ?? null,
    perUnitEachInterval: price.billing_scheme === 'per_unit' && (price.recurring?.interval_count ?? 1) === 1,
    usageType: price.recurring?.usage_type === 'metered' ? 'metered' : 'licensed',
    meterId: price.recurring?.meter ?? null,
    transform: price.transform_quantity && { divideBy: price.transform_quantity.divide_by, round: price.transform_quantity.round },
  };
}
