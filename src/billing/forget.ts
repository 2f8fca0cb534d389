// Ending a user's billing when they delete their account: every live subscription of
// their Stripe customer canceled now, the customer deleted in Stripe, and locally the
// customer laid to rest as customer.deleted would (the link, which holds the email, is
// removed; the subscription rows stay, reading as canceled). Why rows are kept rather
// than erased: docs/SECURITY.md, "Account deletion". Safe to run again: what is already
// canceled or deleted is skipped.

import type Stripe from 'stripe';
import type { BillingStore } from '../store.ts';

export const FORGET_EVENT_TYPE = 'forget.customer';
/** Statuses Stripe will not cancel again. */
const ENDED = new Set<string>(['canceled', 'incomplete_expired']);

export interface ForgetDeps {
  stripe: Stripe;
  store: BillingStore;
  livemode: boolean;
}

export interface ForgetReport {
  userId: string;
  customerId: string | null;
  canceledSubscriptions: string[];
  customerDeleted: 'deleted' | 'already deleted' | 'no customer';
}

export async function forgetUser(deps: ForgetDeps, userId: string, now: () => Date = () => new Date()): Promise<ForgetReport> {
  const account = await deps.store.getAccount(userId);
  const customerId = account?.stripeCustomerId ?? account?.deletedCustomerId ?? null;
  const report: ForgetReport = { userId, customerId, canceledSubscriptions: [], customerDeleted: 'no customer' };
  if (!customerId) return report;

  // Every subscription Stripe has for the customer, not only those we know of.
  const live: string[] = [];
  try {
    for await (const subscription of deps.stripe.subscriptions.list({ customer: customerId, status: 'all', limit: 100 })) {
      if (!ENDED.has(subscription.status)) live.push(subscription.id);
    }
  } catch (error) {
    if (!isMissing(error)) throw error; // a deleted customer has none left
  }
  for (const id of live) {
    try {
      await deps.stripe.subscriptions.cancel(id, {}, { idempotencyKey: `billing-forget-${id}` });
      report.canceledSubscriptions.push(id);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }

  try {
    await deps.stripe.customers.del(customerId);
    report.customerDeleted = 'deleted';
  } catch (error) {
    if (!isMissing(error)) throw error;
    report.customerDeleted = 'already deleted';
  }

  // What Stripe's customer.deleted will say, applied now: the same write, the same
  // tombstone, so whichever comes first the result is one.
  await deps.store.applyEvent({
    id: `forget_${customerId}`,
    type: FORGET_EVENT_TYPE,
    created: Math.floor(now().getTime() / 1000),
    livemode: deps.livemode,
    apiVersion: null,
    change: { kind: 'customer_deleted', customer_id: customerId },
  });
  return report;
}

function isMissing(error: unknown): boolean {
  return (error as { code?: unknown }).code === 'resource_missing';
}
