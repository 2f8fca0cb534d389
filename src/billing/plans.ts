// GET /api/stripe/plans: the catalog for a pricing table. Names, features and trials
// from the catalog; each price's amount, currency and interval as Stripe holds them.

import type { PlansConfig } from '../config.ts';
import type { CatalogPrices } from './prices.ts';

export interface PlansDeps {
  config: PlansConfig;
  /** null without a catalog. */
  prices: CatalogPrices | null;
}

export interface PlanView {
  key: string;
  name: string;
  description: string | null;
  features: { key: string; name: string }[];
  trial: { days: number; cardRequired: boolean } | null;
  /** Sold per seat: a team pays for max(its members, min). */
  seats: { min: number } | null;
  prices: { lookupKey: string; interval: string; amount: number | null; currency: string }[];
}

export interface PlansBody {
  /** The lookup key a checkout without a body subscribes to; null without a catalog. */
  defaultPrice: string | null;
  plans: PlanView[];
}

export async function listPlans(deps: PlansDeps): Promise<PlansBody> {
  const catalog = deps.config.catalog;
  if (!catalog || !deps.prices) return { defaultPrice: null, plans: [] };
  const inStripe = await deps.prices.get();
  return {
    defaultPrice: catalog.defaultPrice,
    plans: catalog.plans.map((plan) => ({
      key: plan.key,
      name: plan.name,
      description: plan.description,
      features: plan.features.map((key) => ({ key, name: catalog.features.get(key) ?? key })),
      trial: plan.trial && { days: plan.trial.days, cardRequired: plan.trial.cardRequired },
      seats: plan.seats && { min: plan.seats.min },
      // A price billing:setup has not made yet, or one under our lookup key that is not
      // ours, is not for sale: it is left out.
      prices: plan.prices.flatMap((price) => {
        const stripe = inStripe.forSale.get(price.lookupKey);
        return stripe ? [{ lookupKey: price.lookupKey, interval: stripe.interval, amount: stripe.amount, currency: stripe.currency }] : [];
      }),
    })),
  };
}
