// Reduces a verified Stripe event to the state change we store, or to nothing when the
// event is not one we act on. Pure: no I/O, so every rule here is unit-testable.
// Everything comes from the event's own object: no extra Stripe call is needed.

import type Stripe from 'stripe';
import type { InvoiceOutcome, PaymentOutcome, StateChange, SubscriptionSnapshot } from '../store.ts';
import { SUBSCRIPTION_STATUSES, type SubscriptionStatus } from './access.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const SUBSCRIPTION_EVENTS = [
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'customer.subscription.paused',
  'customer.subscription.resumed',
] as const satisfies readonly Stripe.Event.Type[];

const INVOICE_OUTCOMES = {
  'invoice.paid': 'paid',
  'invoice.payment_failed': 'failed',
  'invoice.payment_action_required': 'action_required',
} as const satisfies Partial<Record<Stripe.Event.Type, PaymentOutcome>>;

/** The event types this backend applies. Everything else is acknowledged and ignored. */
export const HANDLED_EVENT_TYPES: ReadonlySet<Stripe.Event.Type> = new Set<Stripe.Event.Type>([
  'checkout.session.completed',
  ...SUBSCRIPTION_EVENTS,
  ...(Object.keys(INVOICE_OUTCOMES) as (keyof typeof INVOICE_OUTCOMES)[]),
  'customer.subscription.trial_will_end',
  'customer.deleted',
]);

export type Reduction =
  | { action: 'apply'; change: StateChange }
  /** Acknowledged without a write; `reason` is for the log. */
  | { action: 'skip'; reason: string };

const skip = (reason: string): Reduction => ({ action: 'skip', reason });

export function reduceEvent(event: Stripe.Event): Reduction {
  switch (event.type) {
    case 'checkout.session.completed':
      return reduceCheckoutCompleted(event.data.object);
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.deleted':
    case 'customer.subscription.paused':
    case 'customer.subscription.resumed': {
      const subscription = snapshotOf(event.data.object);
      return subscription ? { action: 'apply', change: { kind: 'subscription', subscription } } : skip('subscription without a known status');
    }
    case 'invoice.paid':
    case 'invoice.payment_failed':
    case 'invoice.payment_action_required': {
      const invoice = invoiceOutcomeOf(event.data.object, INVOICE_OUTCOMES[event.type]);
      return invoice ? { action: 'apply', change: { kind: 'invoice', invoice } } : skip('invoice not for a subscription');
    }
    case 'customer.subscription.trial_will_end': {
      const customerId = idOf(event.data.object.customer);
      if (!customerId) return skip('subscription without a customer');
      return { action: 'apply', change: { kind: 'trial_will_end', subscription_id: event.data.object.id, customer_id: customerId } };
    }
    case 'customer.deleted':
      return { action: 'apply', change: { kind: 'customer_deleted', customer_id: event.data.object.id } };
    default:
      return skip('unhandled event type');
  }
}

function reduceCheckoutCompleted(session: Stripe.Checkout.Session): Reduction {
  if (session.mode !== 'subscription') return skip('not a subscription checkout');
  const userId = userIdOf(session.client_reference_id) ?? userIdOf(session.metadata?.['userId']);
  // A Payment Link or a session made elsewhere: not ours to link to a user.
  if (!userId) return skip('checkout session has no user id');
  const customerId = idOf(session.customer);
  const subscriptionId = idOf(session.subscription);
  if (!customerId || !subscriptionId) return skip('checkout session has no customer or subscription');
  return {
    action: 'apply',
    change: {
      kind: 'checkout_completed',
      user_id: userId,
      customer_id: customerId,
      subscription_id: subscriptionId,
      email: session.customer_details?.email ?? session.customer_email ?? session.metadata?.['email'] ?? null,
    },
  };
}

/** The stored view of a subscription. Since API version 2025-03-31 the billing period
 *  lives on each item; with several items the subscription's period spans them all. */
export function snapshotOf(subscription: Stripe.Subscription): SubscriptionSnapshot | null {
  const customerId = idOf(subscription.customer);
  if (!customerId || !isStatus(subscription.status)) return null;
  const items = subscription.items.data;
  const first = items[0];
  const starts = items.map((item) => item.current_period_start);
  const ends = items.map((item) => item.current_period_end);
  return {
    id: subscription.id,
    customer_id: customerId,
    user_id: userIdOf(subscription.metadata['userId']),
    status: subscription.status,
    price_id: first?.price.id ?? null,
    quantity: first?.quantity ?? null,
    current_period_start: starts.length > 0 ? iso(Math.min(...starts)) : null,
    current_period_end: ends.length > 0 ? iso(Math.max(...ends)) : null,
    cancel_at_period_end: subscription.cancel_at_period_end,
    cancel_at: iso(subscription.cancel_at),
    canceled_at: iso(subscription.canceled_at),
    ended_at: iso(subscription.ended_at),
    trial_start: iso(subscription.trial_start),
    trial_end: iso(subscription.trial_end),
    created: iso(subscription.created),
  };
}

function invoiceOutcomeOf(invoice: Stripe.Invoice, outcome: PaymentOutcome): InvoiceOutcome | null {
  const subscriptionId = idOf(invoice.parent?.subscription_details?.subscription);
  const customerId = idOf(invoice.customer);
  if (!subscriptionId || !customerId || !invoice.id) return null;
  return {
    id: invoice.id,
    customer_id: customerId,
    subscription_id: subscriptionId,
    outcome,
    amount: outcome === 'paid' ? invoice.amount_paid : invoice.amount_due,
    currency: invoice.currency,
    hosted_invoice_url: invoice.hosted_invoice_url ?? null,
    next_payment_attempt: iso(invoice.next_payment_attempt),
  };
}

function isStatus(status: string): status is SubscriptionStatus {
  return (SUBSCRIPTION_STATUSES as readonly string[]).includes(status);
}

function userIdOf(value: string | null | undefined): string | null {
  return value && UUID.test(value) ? value.toLowerCase() : null;
}

function iso(seconds: number): string;
function iso(seconds: number | null | undefined): string | null;
function iso(seconds: number | null | undefined): string | null {
  return typeof seconds === 'number' ? new Date(seconds * 1000).toISOString() : null;
}

/** Stripe fields that hold either an id or the expanded object. */
function idOf(value: string | { id: string } | null | undefined): string | null {
  if (!value) return null;
  return typeof value === 'string' ? value : value.id;
}
