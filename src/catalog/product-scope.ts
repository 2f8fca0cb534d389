// Which subscriptions are for this product. One Stripe account often sells more than
// one thing (another product, a donation, an add-on sold elsewhere); only a
// subscription to what this backend sells may grant its access.

import type { Catalog } from './catalog.ts';
import type { SubscriptionItemFacts } from '../stripe/objects.ts';

export interface ProductScope {
  /** Prices this backend sells (STRIPE_PRICE_ID). */
  priceIds: ReadonlySet<string>;
  /** Products whose every price counts (STRIPE_PRODUCT_ID), so a new price of the
   *  same product, or an old one kept by existing subscribers, still counts. */
  productIds: ReadonlySet<string>;
  /** The catalog (BILLING_CATALOG), when there is one: which plan, interval and features
   *  a subscription's price stands for. */
  catalog: Catalog | null;
}

export function productScope(priceIds: readonly string[], productIds: readonly string[] = [], catalog: Catalog | null = null): ProductScope {
  return { priceIds: new Set(priceIds), productIds: new Set(productIds), catalog };
}

/** A subscription is ours when any of its items is a price or product we sell. */
export function isForThisProduct(items: readonly SubscriptionItemFacts[], scope: ProductScope): boolean {
  return items.some(
    ({ price }) => scope.priceIds.has(price.id) || (price.productId !== null && scope.productIds.has(price.productId)),
  );
}
