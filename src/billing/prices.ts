// The catalog's prices as Stripe holds them: their ids (a checkout needs one) and their
// amounts, currencies and intervals (the pricing table shows Stripe's, not the file's:
// the file says what billing:setup should make, Stripe says what customers pay). One
// list call per TTL for all of them, by lookup key; shared by whoever asks in between.

import type Stripe from 'stripe';
import type { StripeLoader } from '../stripe-client.ts';
import type { Catalog, Interval } from './catalog.ts';
import { allPrices } from './catalog.ts';

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

export interface CatalogPrices {
  /** Every catalog price Stripe has, by lookup key (a price Stripe lacks is missing). */
  get(): Promise<ReadonlyMap<string, StripePrice>>;
}

export function catalogPrices(stripe: StripeLoader, catalog: Catalog, options: { ttlMs?: number; now?: () => number } = {}): CatalogPrices {
  const ttl = options.ttlMs ?? PRICES_TTL_MS;
  const now = options.now ?? Date.now;
  let cached: { at: number; prices: Promise<ReadonlyMap<string, StripePrice>> } | undefined;
  const planOf = new Map(allPrices(catalog).map(({ plan, price }) => [price.lookupKey, { plan: plan.key, interval: price.interval }]));

  const fetchAll = async (): Promise<ReadonlyMap<string, StripePrice>> => {
    const client = await stripe();
    const keys = [...planOf.keys()];
    const out = new Map<string, StripePrice>();
    for (let i = 0; i < keys.length; i += LOOKUP_KEYS_PER_CALL) {
      const page = await client.prices.list({ lookup_keys: keys.slice(i, i + LOOKUP_KEYS_PER_CALL), active: true, limit: 100 });
      for (const price of page.data) {
        const known = price.lookup_key ? planOf.get(price.lookup_key) : undefined;
        if (!price.lookup_key || !known) continue;
        out.set(price.lookup_key, {
          lookupKey: price.lookup_key,
          plan: known.plan,
          priceId: price.id,
          amount: price.unit_amount,
          currency: price.currency,
          interval: intervalOf(price, known.interval),
        });
      }
    }
    return out;
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

function intervalOf(price: Stripe.Price, fallback: Interval): string {
  return price.recurring?.interval ?? fallback;
}
