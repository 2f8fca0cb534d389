// What a subscription status means for the product. Whether it gives access now is the
// database's to decide (billing_decide_access); the API reads that decision.

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

/** The stored facts access depends on. Times are ISO 8601 strings, as stored. */
export interface AccessFacts {
  status: SubscriptionStatus;
  cancelAtPeriodEnd: boolean;
  currentPeriodStart: string | null;
  currentPeriodEnd: string | null;
  /** First failed payment of the current delinquency. */
  paymentFailedAt: string | null;
}

export type AccessReason =
  | 'active'
  | 'trialing'
  | 'canceling' // active (or trialing) with cancel_at_period_end, before the period ends
  | 'period_ended' // the same, after the period ended
  | 'grace_period' // past_due, within the grace days (billing_settings) of the first failed payment
  | 'grace_expired'
  | 'no_subscription'
  | Exclude<SubscriptionStatus, 'active' | 'trialing' | 'past_due'>;

/** The database's decision for a subject now: billing_decide_access with the grace days
 *  and features as billing_has_access and billing_features read them. */
export interface AccessDecision {
  access: boolean;
  reason: AccessReason;
  /** When a past-due subscription's grace period ends (or ended), as stored (ISO 8601). */
  graceUntil: string | null;
  /** The feature keys the subject has now: none without access. */
  features: string[];
}
