// The catalog's prices as Stripe holds them: their ids (a checkout needs one) and their
// amounts, currencies and intervals. One list call per TTL for all of them, by lookup
// key; shared by whoever asks in between.
//
// A lookup key finds whatever price holds it on the account, and another app on the
// same account can take ours over (transfer_lookup_key). So a price is for sale only
// when it is the catalog's (its plan's product, amount, currency and interval); any
// other is left out and logged at error once per read, with both prices.

import type Stripe from 'stripe';
import type { Logger } from '../log.ts';
import type { StripeLoader } from '../stripe-client.ts';
import type { Catalog, HeldPrice } from './catalog.ts';
import { allPrices, isCatalogPrice } from './catalog.ts';

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

/** One read of the catalog's prices in Stripe. A lookup key in neither is not in Stripe
 *  (billing:setup has not made it). */
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
  const wanted = new Map(allPrices(catalog).map((entry) => [entry.price.lookupKey, entry]));

  const fetchAll = async (): Promise<PricesInStripe> => {
    const client = await stripe();
    const keys = [...wanted.keys()];
    const forSale = new Map<string, StripePrice>();
    const mismatched = new Set<string>();
    for (let i = 0; i < keys.length; i += LOOKUP_KEYS_PER_CALL) {
      const page = await client.prices.list({ lookup_keys: keys.slice(i, i + LOOKUP_KEYS_PER_CALL), active: true, limit: 100 });
      for (const price of page.data) {
        const entry = price.lookup_key ? wanted.get(price.lookup_key) : undefined;
        if (!price.lookup_key || !entry) continue;
        const held = heldPrice(price);
        if (!isCatalogPrice(entry, held)) {
          mismatched.add(price.lookup_key);
          log.error('price under a catalog lookup key is not the catalog\'s: not for sale', {
            lookupKey: price.lookup_key,
            plan: entry.plan.key,
            catalogProduct: entry.plan.productId,
            catalogAmount: entry.price.amount,
            catalogCurrency: entry.price.currency,
            catalogInterval: entry.price.interval,
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
          plan: entry.plan.key,
          priceId: price.id,
          amount: held.amount,
          currency: held.currency,
          interval: entry.price.interval,
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
    perUnitEachInterval:
      price.billing_scheme === 'per_unit' &&
      (price.recurring?.interval_count ?? 1) === 1 &&
      (price.recurring?.usage_type ?? 'licensed') === 'licensed' &&
      !price.transform_quantity,
  };
}
