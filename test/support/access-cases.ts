// One table of access cases, run through billing_decide_access (SQL), GET
// /api/stripe/subscription and billing_features/billing_has_access on real
// accounts (test/entitlements.test.ts). Times are days from "now"; none is within half a
// day of a boundary, so a slow machine cannot move a case across one.

import type { AccessReason, SubscriptionStatus } from '../../src/database/access.ts';

export interface AccessCase {
  name: string;
  status: SubscriptionStatus;
  cancelAtPeriodEnd?: boolean;
  /** Days from now. */
  periodStart: number | null;
  periodEnd: number | null;
  paymentFailed?: number | null;
  access: boolean;
  reason: AccessReason;
}

export const GRACE_DAYS = 7;

export const ACCESS_CASES: readonly AccessCase[] = [
  { name: 'active', status: 'active', periodStart: -10, periodEnd: 20, access: true, reason: 'active' },
  { name: 'trialing', status: 'trialing', periodStart: -3, periodEnd: 11, access: true, reason: 'trialing' },
  { name: 'active, canceling, before the end', status: 'active', cancelAtPeriodEnd: true, periodStart: -10, periodEnd: 20, access: true, reason: 'canceling' },
  { name: 'active, canceling, period over', status: 'active', cancelAtPeriodEnd: true, periodStart: -31, periodEnd: -1, access: false, reason: 'period_ended' },
  { name: 'trialing, canceling, trial over', status: 'trialing', cancelAtPeriodEnd: true, periodStart: -15, periodEnd: -1, access: false, reason: 'period_ended' },
  { name: 'past due, in grace', status: 'past_due', periodStart: -2, periodEnd: 28, paymentFailed: -2, access: true, reason: 'grace_period' },
  { name: 'past due, grace over', status: 'past_due', periodStart: -9, periodEnd: 21, paymentFailed: -9, access: false, reason: 'grace_expired' },
  { name: 'past due, no failure seen, period started 3 days ago', status: 'past_due', periodStart: -3, periodEnd: 27, access: true, reason: 'grace_period' },
  { name: 'past due, no failure seen, period started 9 days ago', status: 'past_due', periodStart: -9, periodEnd: 21, access: false, reason: 'grace_expired' },
  { name: 'unpaid', status: 'unpaid', periodStart: -20, periodEnd: 10, paymentFailed: -20, access: false, reason: 'unpaid' },
  { name: 'canceled', status: 'canceled', periodStart: -40, periodEnd: -10, access: false, reason: 'canceled' },
  { name: 'incomplete', status: 'incomplete', periodStart: 0.5, periodEnd: 30, access: false, reason: 'incomplete' },
  { name: 'incomplete_expired', status: 'incomplete_expired', periodStart: -2, periodEnd: 28, access: false, reason: 'incomplete_expired' },
  { name: 'paused', status: 'paused', periodStart: -5, periodEnd: 25, access: false, reason: 'paused' },
];
