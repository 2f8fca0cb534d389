// Reduces a verified Stripe event to the state change we store, or to nothing when the
// event is not one we act on. Pure: no I/O, so every rule here is unit-testable.
// Everything comes from the event's own object: no extra Stripe call is needed. The
// object is read through stripe/objects.ts, whatever API version rendered it.

import type Stripe from 'stripe';
import type { InvoiceOutcome, PaymentOutcome, ScheduledChange, StateChange } from '../database/store.ts';
import { iso, snapshotOf, userIdOf } from '../database/snapshot.ts';
import type { ProductScope } from '../catalog/product-scope.ts';
import {
  readCheckoutSession,
  readCustomerId,
  readEntitlementSummary,
  readInvoice,
  readSubscription,
  readSubscriptionSchedule,
  UnreadableObjectError,
  type CheckoutSessionFacts,
  type InvoiceFacts,
  type SubscriptionScheduleFacts,
} from '../stripe/objects.ts';

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

/** A schedule's every change says what it will do next (or that it will do nothing). */
const SCHEDULE_EVENTS = [
  'subscription_schedule.created',
  'subscription_schedule.updated',
  'subscription_schedule.released',
  'subscription_schedule.canceled',
  'subscription_schedule.completed',
  'subscription_schedule.aborted',
] as const satisfies readonly Stripe.Event.Type[];

/** The event types this backend applies. Everything else is acknowledged and ignored. */
export const HANDLED_EVENT_TYPES: ReadonlySet<Stripe.Event.Type> = new Set<Stripe.Event.Type>([
  'checkout.session.completed',
  ...SUBSCRIPTION_EVENTS,
  ...(Object.keys(INVOICE_OUTCOMES) as (keyof typeof INVOICE_OUTCOMES)[]),
  'customer.subscription.trial_will_end',
  'customer.deleted',
  'entitlements.active_entitlement_summary.updated',
  ...SCHEDULE_EVENTS,
  // A draft invoice of a subscription: its period's unsent meter usage is sent before
  // Stripe finalizes it (src/meters).
  'invoice.created',
]);

export type Reduction =
  | { action: 'apply'; change: StateChange }
  /** invoice.created: the customer's unsent meter usage goes to Stripe before the draft
   *  is finalized (src/meters/report.ts flushCustomerUsage); nothing else is stored. */
  | { action: 'flush'; customerId: string; invoiceId: string }
  /** Acknowledged without a write; `reason` is for the log. */
  | { action: 'skip'; reason: string }
  /** Verified, but its object lacks what we need: acknowledged, logged and recorded as
   *  failed, since no redelivery of the same bytes can fix it. */
  | { action: 'unreadable'; reason: string };

const skip = (reason: string): Reduction => ({ action: 'skip', reason });

/** The minimum of an event this module reads; the object is read by stripe/objects.ts. */
export interface EventEnvelope {
  type: string;
  data: { object: unknown };
}

export function reduceEvent(event: EventEnvelope, scope: ProductScope): Reduction {
  try {
    return reduceReadable(event, scope);
  } catch (error) {
    if (error instanceof UnreadableObjectError) return { action: 'unreadable', reason: error.message };
    throw error;
  }
}

function reduceReadable(event: EventEnvelope, scope: ProductScope): Reduction {
  const object = event.data.object;
  switch (event.type) {
    case 'checkout.session.completed':
      return reduceCheckoutCompleted(readCheckoutSession(object));
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.deleted':
    case 'customer.subscription.paused':
    case 'customer.subscription.resumed':
      return { action: 'apply', change: { kind: 'subscription', subscription: snapshotOf(readSubscription(object), scope) } };
    case 'invoice.paid':
    case 'invoice.payment_failed':
    case 'invoice.payment_action_required': {
      const invoice = invoiceOutcomeOf(readInvoice(object), INVOICE_OUTCOMES[event.type]);
      return invoice ? { action: 'apply', change: { kind: 'invoice', invoice } } : skip('invoice not for a subscription');
    }
    case 'invoice.created': {
      const invoice = readInvoice(object);
      return invoice.subscriptionId ? { action: 'flush', customerId: invoice.customerId, invoiceId: invoice.id } : skip('invoice not for a subscription');
    }
    case 'customer.subscription.trial_will_end': {
      const { id, customerId } = readSubscription(object);
      return { action: 'apply', change: { kind: 'trial_will_end', subscription_id: id, customer_id: customerId } };
    }
    case 'customer.deleted':
      return { action: 'apply', change: { kind: 'customer_deleted', customer_id: readCustomerId(object) } };
    case 'entitlements.active_entitlement_summary.updated': {
      // A plan switch in the portal changes these; only the catalog's features count here
      // (another product on the account may grant features of its own).
      const catalog = scope.catalog;
      if (!catalog) return skip('no catalog: features are not sold');
      const { customerId, featureKeys } = readEntitlementSummary(object);
      const features = [...new Set(featureKeys.filter((key) => catalog.features.has(key)))];
      return { action: 'apply', change: { kind: 'entitlements', customer_id: customerId, features } };
    }
    case 'subscription_schedule.created':
    case 'subscription_schedule.updated':
    case 'subscription_schedule.released':
    case 'subscription_schedule.canceled':
    case 'subscription_schedule.completed':
    case 'subscription_schedule.aborted': {
      const schedule = readSubscriptionSchedule(object);
      if (!schedule.subscriptionId) return skip('schedule of a subscription that does not exist yet');
      return { action: 'apply', change: { kind: 'schedule', schedule: nextChangeOf(schedule, schedule.subscriptionId) } };
    }
    default:
      return skip('unhandled event type');
  }
}

/** Statuses of a schedule that will still change the subscription. */
const PENDING_SCHEDULE = new Set(['not_started', 'active']);

/** The schedule's next phase: the one that starts when the current one ends (or the
 *  first, before it starts), and the price it moves the subscription to. */
function nextChangeOf(schedule: SubscriptionScheduleFacts, subscriptionId: string): ScheduledChange {
  const phases = [...schedule.phases].sort((a, b) => a.start - b.start);
  const from = schedule.currentPhase?.end ?? null;
  const next = PENDING_SCHEDULE.has(schedule.status)
    ? from === null
      ? phases[0]
      : phases.find((phase) => phase.start >= from)
    : undefined;
  const price = next?.priceIds[0] ?? null;
  return {
    schedule_id: schedule.id,
    subscription_id: subscriptionId,
    customer_id: schedule.customerId,
    status: schedule.status,
    next_price_id: next && price ? price : null,
    next_change_at: next && price ? iso(next.start) : null,
  };
}

/** The mark our checkout leaves on the sessions it creates (see checkout.ts): the user
 *  id both as client_reference_id and in metadata. A Payment Link or pricing table
 *  lets the buyer set client_reference_id, but never per-buyer metadata. */
export function isOurCheckoutSession(session: CheckoutSessionFacts): boolean {
  return session.paymentLinkId === null && session.clientReferenceId !== null && session.metadata['userId'] === session.clientReferenceId;
}

/** The team a session of our checkout was for (its metadata.teamId), or null for the
 *  buyer's own. A teamId that is not a team id reads as "not ours". */
export function teamOfSession(session: CheckoutSessionFacts): string | null {
  return userIdOf(session.metadata['teamId']);
}

function reduceCheckoutCompleted(session: CheckoutSessionFacts): Reduction {
  if (session.mode !== 'subscription') return skip('not a subscription checkout');
  // Made elsewhere on the same account: not ours to link to a user. The database also
  // checks that the session's customer is the one our checkout stored for the user.
  if (!isOurCheckoutSession(session)) return skip('checkout session not created by this backend');
  const userId = userIdOf(session.clientReferenceId);
  if (!userId) return skip('checkout session has no user id');
  if (!session.customerId || !session.subscriptionId) return skip('checkout session has no customer or subscription');
  const teamId = teamOfSession(session);
  if (session.metadata['teamId'] !== undefined && teamId === null) return skip('checkout session names no valid team');
  return {
    action: 'apply',
    change: {
      kind: 'checkout_completed',
      // A team's session is the team's, through the customer stored for it (the database checks).
      user_id: teamId ?? userId,
      customer_id: session.customerId,
      subscription_id: session.subscriptionId,
      email: session.email,
      ...(teamId !== null && { team: true }),
    },
  };
}

function invoiceOutcomeOf(invoice: InvoiceFacts, outcome: PaymentOutcome): InvoiceOutcome | null {
  if (!invoice.subscriptionId) return null;
  return {
    id: invoice.id,
    customer_id: invoice.customerId,
    subscription_id: invoice.subscriptionId,
    outcome,
    amount: outcome === 'paid' ? invoice.amountPaid : invoice.amountDue,
    currency: invoice.currency,
    hosted_invoice_url: invoice.hostedInvoiceUrl,
    next_payment_attempt: iso(invoice.nextPaymentAttempt),
  };
}
