// The shared builder of Stripe events (scripts/lib/stripe-events.ts) with the short
// arguments tests use: one user's ids, the state a step needs, defaults for the rest.

import { randomBytes } from 'node:crypto';
import type Stripe from 'stripe';
import {
  checkoutSessionCompletedEvent,
  customerDeletedEvent as builtCustomerDeletedEvent,
  FIXTURE_IDS,
  invoiceEvent as builtInvoiceEvent,
  stripeId,
  subscriptionEvent as builtSubscriptionEvent,
  type InvoiceEventType,
  type Parties,
  type SubscriptionEventType,
} from '../../scripts/lib/stripe-events.ts';

export type { InvoiceEventType, SubscriptionEventType };

export interface Ids {
  userId: string;
  customerId: string;
  subscriptionId: string;
  /** A team's subscription: the team it is for (userId is then its buyer). */
  teamId?: string;
}

export function newIds(userId: string): Ids {
  const tag = randomBytes(9).toString('base64url').replaceAll(/[-_]/g, 'x');
  return { userId, customerId: `cus_${tag}`, subscriptionId: `sub_${tag}` };
}

/** A fresh Stripe-looking event id. */
export function eventId(): string {
  return stripeId('evt');
}

const DAY = 86_400;
const AMOUNT = 900;

function parties(ids: Ids, priceId: string = FIXTURE_IDS.priceId, productId?: string): Parties {
  return {
    ...ids,
    email: FIXTURE_IDS.email,
    priceId,
    ...(productId && { productId }),
    amount: AMOUNT,
    currency: 'eur',
  };
}

export interface SubscriptionState {
  status: Stripe.Subscription.Status;
  periodStart: number;
  periodEnd: number;
  cancelAtPeriodEnd?: boolean;
  canceledAt?: number | null;
  endedAt?: number | null;
  trialStart?: number | null;
  trialEnd?: number | null;
  priceId?: string;
  productId?: string;
  quantity?: number;
  /** Leave metadata.userId off, as for a subscription created outside our checkout. */
  withoutUserMetadata?: boolean;
}

export function subscriptionEvent(type: SubscriptionEventType, ids: Ids, created: number, state: SubscriptionState): Stripe.Event {
  return builtSubscriptionEvent(
    type,
    parties(ids, state.priceId, state.productId),
    created,
    {
      status: state.status,
      created: Math.min(created, state.periodStart),
      periodStart: state.periodStart,
      periodEnd: state.periodEnd,
      cancelAtPeriodEnd: state.cancelAtPeriodEnd ?? false,
      canceledAt: state.canceledAt ?? null,
      endedAt: state.endedAt ?? null,
      trialStart: state.trialStart ?? null,
      trialEnd: state.trialEnd ?? null,
      latestInvoice: null,
    },
    {
      ...(state.withoutUserMetadata && { withoutUserMetadata: true }),
      ...(state.quantity !== undefined && { quantity: state.quantity }),
    },
  );
}

export function invoiceEvent(
  type: InvoiceEventType,
  ids: Ids,
  created: number,
  invoice: { id?: string; amount?: number; nextAttempt?: number | null } = {},
): Stripe.Event {
  return builtInvoiceEvent(type, parties(ids), created, {
    id: invoice.id ?? stripeId('in'),
    billingReason: 'subscription_cycle',
    periodStart: created - 30 * DAY,
    periodEnd: created,
    amount: invoice.amount ?? AMOUNT,
    attemptCount: 1,
    nextPaymentAttempt: invoice.nextAttempt !== undefined ? invoice.nextAttempt : type === 'invoice.payment_failed' ? created + 3 * DAY : null,
  });
}

export function checkoutCompletedEvent(ids: Ids, created: number, email: string = FIXTURE_IDS.email): Stripe.Event {
  return checkoutSessionCompletedEvent({ ...parties(ids), email }, created, {
    id: `cs_test_${randomBytes(12).toString('hex')}`,
    invoiceId: null,
    amountTotal: AMOUNT,
  });
}

export function customerDeletedEvent(ids: Ids, created: number): Stripe.Event {
  return builtCustomerDeletedEvent({ customerId: ids.customerId, email: FIXTURE_IDS.email }, created);
}
