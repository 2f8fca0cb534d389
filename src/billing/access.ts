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

export interface AccessDecision {
  access: boolean;
  reason: AccessReason;
  /** When a past-due subscription's grace period ends (or ended). */
  graceUntil: Date | null;
}

const DAY_MS = 86_400_000;

/**
 * Whether the user may use the product now. The one place that reads statuses as
 * access; every endpoint and the dashboard's status call go through it.
 */
export function decideAccess(facts: AccessFacts | null, now: Date, graceDays: number): AccessDecision {
  if (!facts) return { access: false, reason: 'no_subscription', graceUntil: null };
  const at = now.getTime();
  switch (facts.status) {
    case 'active':
    case 'trialing': {
      if (facts.cancelAtPeriodEnd) {
        const ends = facts.currentPeriodEnd ? Date.parse(facts.currentPeriodEnd) : Number.POSITIVE_INFINITY;
        return at < ends
          ? { access: true, reason: 'canceling', graceUntil: null }
          : { access: false, reason: 'period_ended', graceUntil: null };
      }
      return { access: true, reason: facts.status, graceUntil: null };
    }
    case 'past_due': {
      // Without a recorded failure (its invoice event not seen yet), the renewal that
      // failed started the current period.
      const since = facts.paymentFailedAt ?? facts.currentPeriodStart;
      if (!since) return { access: false, reason: 'grace_expired', graceUntil: null };
      const graceUntil = new Date(Date.parse(since) + graceDays * DAY_MS);
      return at < graceUntil.getTime()
        ? { access: true, reason: 'grace_period', graceUntil }
        : { access: false, reason: 'grace_expired', graceUntil };
    }
    default:
      return { access: false, reason: facts.status, graceUntil: null };
  }
}
