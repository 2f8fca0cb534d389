// What a subscription status means for the product. Pure functions of stored state.

export const SUBSCRIPTION_STATUSES = [
  'incomplete',
  'incomplete_expired',
  'trialing',
  'active',
  'past_due',
  'canceled',
  'unpaid',
  'paused',
] as const;

export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

/** Statuses after which a user may start a new subscription. Any other status means the
 *  user has a subscription to manage in the portal, not a second one to buy. */
const ENDED: ReadonlySet<SubscriptionStatus> = new Set(['canceled', 'incomplete_expired']);

export function canStartCheckout(status: SubscriptionStatus | null): boolean {
  return status === null || ENDED.has(status);
}
