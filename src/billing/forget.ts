// Ending a user's billing when they delete their account: the email taken out of the
// metadata of their Stripe customer's subscriptions and Checkout Sessions (checkout wrote
// it there), every live subscription canceled now, the customer deleted in Stripe, and
// locally the customer laid to rest as customer.deleted would (the link, which holds the
// email, is removed; the subscription rows stay, reading as canceled). What Stripe keeps,
// and why rows are kept rather than erased: docs/SECURITY.md, "Account deletion". Safe
// to run again: what is already canceled or deleted is skipped.

import type Stripe from 'stripe';
import type { BillingStore } from '../store.ts';

export const FORGET_EVENT_TYPE = 'forget.customer';
/** Statuses Stripe will not cancel again. Their metadata is left alone: a canceled
 *  subscription changes only its cancellation_details (incomplete_expired taken as alike). */
const ENDED = new Set<string>(['canceled', 'incomplete_expired']);

export interface ForgetDeps {
  stripe: Stripe;
  store: BillingStore;
  livemode: boolean;
}

export interface ForgetReport {
  userId: string;
  customerId: string | null;
  /** Subscriptions whose metadata no longer holds the email (scrubbed before canceling). */
  scrubbedSubscriptions: string[];
  canceledSubscriptions: string[];
  /** Ended before this run with the email in their metadata: Stripe lets a canceled
   *  subscription change only its cancellation_details, so it stays there. */
  unscrubbedSubscriptions: string[];
  scrubbedCheckoutSessions: string[];
  /** Sessions whose metadata update Stripe refused: they keep the email. */
  unscrubbedCheckoutSessions: string[];
  customerDeleted: 'deleted' | 'already deleted' | 'no customer';
}

/** Stripe removes a metadata key set to the empty string. userId stays: it names nobody
 *  once the user is deleted, and events map a subscription to its user by it. */
const SCRUB = { metadata: { email: '' } };

export async function forgetUser(deps: ForgetDeps, userId: string, now: () => Date = () => new Date()): Promise<ForgetReport> {
  const account = await deps.store.getAccount(userId);
  const customerId = account?.stripeCustomerId ?? account?.deletedCustomerId ?? null;
  const report: ForgetReport = {
    userId,
    customerId,
    scrubbedSubscriptions: [],
    canceledSubscriptions: [],
    unscrubbedSubscriptions: [],
    scrubbedCheckoutSessions: [],
    unscrubbedCheckoutSessions: [],
    customerDeleted: 'no customer',
  };
  if (!customerId) return report;

  // Everything Stripe has for the customer, not only what we know of, listed while the
  // customer still exists (a deleted one has none left).
  const live: string[] = [];
  const sessions: string[] = [];
  try {
    for await (const subscription of deps.stripe.subscriptions.list({ customer: customerId, status: 'all', limit: 100 })) {
      if (!ENDED.has(subscription.status)) live.push(subscription.id);
      else if (subscription.metadata['email']) report.unscrubbedSubscriptions.push(subscription.id);
    }
    for await (const session of deps.stripe.checkout.sessions.list({ customer: customerId, limit: 100 })) sessions.push(session.id);
  } catch (error) {
    if (!isMissing(error)) throw error;
  }

  // Scrubbed whether or not the key is there (an absent key set to '' changes nothing), and
  // before canceling: Stripe refuses metadata on a canceled subscription.
  for (const id of live) {
    try {
      await deps.stripe.subscriptions.update(id, SCRUB, { idempotencyKey: `billing-forget-scrub-${id}` });
      report.scrubbedSubscriptions.push(id);
    } catch (error) {
      if (!isMissing(error)) throw error;
    }
  }
  for (const id of sessions) {
    try {
      await deps.stripe.checkout.sessions.update(id, SCRUB, { idempotencyKey: `billing-forget-scrub-${id}` });
      report.scrubbedCheckoutSessions.push(id);
    } catch (error) {
      // Not documented to happen for metadata; if Stripe refuses a session, say so, go on.
      if (!isInvalidRequest(error)) throw error;
      report.unscrubbedCheckoutSessions.push(id);
    }
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

/** A 4xx Stripe answers about the request itself (a missing object is one). */
function isInvalidRequest(error: unknown): boolean {
  return (error as { rawType?: unknown }).rawType === 'invalid_request_error';
}
