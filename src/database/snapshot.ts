// The stored view of a Stripe subscription (the row billing_apply_event keeps), from its
// facts as src/stripe/objects.ts reads them. Shared by every writer of a subscription:
// the webhook's reduction, sync, reconcile and the seat sync.

import { SUBSCRIPTION_STATUSES, type SubscriptionStatus } from './access.ts';
import type { SubscriptionSnapshot } from './store.ts';
import { isForThisProduct, type ProductScope } from '../catalog/product-scope.ts';
import { UnreadableObjectError, type SubscriptionFacts } from '../stripe/objects.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The stored view of a subscription. With several items the period spans them all and
 *  the first item of this product is the one whose price is stored. */
export function snapshotOf(subscription: SubscriptionFacts, scope: ProductScope): SubscriptionSnapshot {
  if (!isStatus(subscription.status)) {
    throw new UnreadableObjectError(`subscription ${subscription.id}: unknown status ${JSON.stringify(subscription.status)}`);
  }
  const ours = subscription.items.find((item) => isForThisProduct([item], scope));
  const shown = ours ?? subscription.items[0];
  return {
    id: subscription.id,
    customer_id: subscription.customerId,
    // A team's subscription is the team's through its customer's link, never through
    // metadata; its metadata.userId is only who bought it.
    user_id: subscription.metadata['teamId'] === undefined ? userIdOf(subscription.metadata['userId']) : null,
    buyer_id: userIdOf(subscription.metadata['userId']),
    status: subscription.status,
    price_id: shown?.price.id ?? null,
    product_id: shown?.price.productId ?? null,
    quantity: shown?.quantity ?? null,
    item_id: shown?.id ?? null,
    for_this_product: ours !== undefined,
    current_period_start: iso(subscription.currentPeriodStart),
    current_period_end: iso(subscription.currentPeriodEnd),
    cancel_at_period_end: subscription.cancelAtPeriodEnd,
    cancel_at: iso(subscription.cancelAt),
    canceled_at: iso(subscription.canceledAt),
    ended_at: iso(subscription.endedAt),
    trial_start: iso(subscription.trialStart),
    trial_end: iso(subscription.trialEnd),
    created: iso(subscription.created),
  };
}

export function isStatus(status: string): status is SubscriptionStatus {
  return (SUBSCRIPTION_STATUSES as readonly string[]).includes(status);
}

export function userIdOf(value: string | null | undefined): string | null {
  return value && UUID.test(value) ? value.toLowerCase() : null;
}

export function iso(seconds: number): string;
export function iso(seconds: number | null): string | null;
export function iso(seconds: number | null): string | null {
  return seconds === null ? null : new Date(seconds * 1000).toISOString();
}
