// GET /api/stripe/plans: the catalog for a pricing table. Names, features and trials
// from the catalog; each price's amount, currency and interval as Stripe holds them;
// limits and usage meters as the catalog gives them (the database enforces them).

import type { Free } from '../catalog/catalog.ts';
import type { Limits, Meters } from '../catalog/limits.ts';
import type { PlansConfig } from '../config/config.ts';
import type { CatalogPrices } from '../catalog/prices.ts';

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
  trial: { days: number; cardRequired: boolean; limits: Limits } | null;
  /** Sold per seat: a team pays for max(its members, min). */
  seats: { min: number } | null;
  prices: { lookupKey: string; interval: string; amount: number | null; currency: string }[];
  limits: Limits;
  usage: Meters;
}

export interface PlansBody {
  /** The lookup key a checkout without a body subscribes to; null without a catalog. */
  defaultPrice: string | null;
  plans: PlanView[];
  /** What a subject without access gets; null: 0 of every key the plans declare. */
  free: Free | null;
}

export async function listPlans(deps: PlansDeps): Promise<PlansBody> {
  const catalog = deps.config.catalog;
  if (!catalog || !deps.prices) return { defaultPrice: null, plans: [], free: null };
  const inStripe = await deps.prices.get();
  return {
    defaultPrice: catalog.defaultPrice,
    plans: catalog.plans.map((plan) => ({
      key: plan.key,
      name: plan.name,
      description: plan.description,
      features: plan.features.map((key) => ({ key, name: catalog.features.get(key) ?? key })),
      trial: plan.trial && { days: plan.trial.days, cardRequired: plan.trial.cardRequired, limits: plan.trial.limits },
      seats: plan.seats && { min: plan.seats.min },
      // A price billing:setup has not made yet, or one under our lookup key that is not
      // ours, is not for sale: it is left out.
      prices: plan.prices.flatMap((price) => {
        const stripe = inStripe.forSale.get(price.lookupKey);
        return stripe ? [{ lookupKey: price.lookupKey, interval: stripe.interval, amount: stripe.amount, currency: stripe.currency }] : [];
      }),
      limits: plan.limits,
      usage: plan.usage,
    })),
    free: catalog.free,
  };
}
