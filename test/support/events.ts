// Builders of realistic Stripe events for one user's billing history, from the
// fixtures in test/fixtures/events (one per type), with the ids and times a test needs.

import { randomBytes } from 'node:crypto';
import type Stripe from 'stripe';
import { loadEvent } from './stack.ts';

export interface Ids {
  userId: string;
  customerId: string;
  subscriptionId: string;
}

export function newIds(userId: string): Ids {
  const tag = randomBytes(9).toString('base64url').replaceAll(/[-_]/g, 'x');
  return { userId, customerId: `cus_${tag}`, subscriptionId: `sub_${tag}` };
}

let counter = 0;
/** Unique, and (for tie-break tests) not ordered by creation. */
export function eventId(): string {
  counter += 1;
  return `evt_${randomBytes(10).toString('hex')}${counter}`;
}

type Obj = Record<string, unknown>;

function base(type: string, created: number, edit: (object: Obj) => void): Stripe.Event {
  const event = structuredClone(loadEvent(type));
  event.id = eventId();
  event.created = created;
  edit(event.data.object);
  return event;
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
  quantity?: number;
  /** Leave metadata.userId off, as for a subscription created outside our checkout. */
  withoutUserMetadata?: boolean;
}

export type SubscriptionEventType =
  | 'customer.subscription.created'
  | 'customer.subscription.updated'
  | 'customer.subscription.deleted'
  | 'customer.subscription.paused'
  | 'customer.subscription.resumed'
  | 'customer.subscription.trial_will_end';

export function subscriptionEvent(type: SubscriptionEventType, ids: Ids, created: number, state: SubscriptionState): Stripe.Event {
  return base(type, created, (sub) => {
    sub['id'] = ids.subscriptionId;
    sub['customer'] = ids.customerId;
    sub['status'] = state.status;
    sub['created'] = Math.min(created, state.periodStart);
    sub['cancel_at_period_end'] = state.cancelAtPeriodEnd ?? false;
    sub['cancel_at'] = state.cancelAtPeriodEnd ? state.periodEnd : null;
    sub['canceled_at'] = state.canceledAt ?? null;
    sub['ended_at'] = state.endedAt ?? null;
    sub['trial_start'] = state.trialStart ?? null;
    sub['trial_end'] = state.trialEnd ?? null;
    sub['metadata'] = state.withoutUserMetadata ? {} : { userId: ids.userId };
    const items = sub['items'] as { data: Obj[] };
    const item = items.data[0] ?? {};
    item['subscription'] = ids.subscriptionId;
    item['current_period_start'] = state.periodStart;
    item['current_period_end'] = state.periodEnd;
    item['quantity'] = state.quantity ?? 1;
    (item['price'] as Obj)['id'] = state.priceId ?? 'price_1SXq0aLkdIwHu7ixMonthly';
  });
}

export type InvoiceEventType = 'invoice.paid' | 'invoice.payment_failed' | 'invoice.payment_action_required';

export function invoiceEvent(type: InvoiceEventType, ids: Ids, created: number, invoice: { id?: string; amount?: number; nextAttempt?: number | null } = {}): Stripe.Event {
  return base(type, created, (inv) => {
    inv['id'] = invoice.id ?? `in_${randomBytes(8).toString('hex')}`;
    inv['customer'] = ids.customerId;
    inv['created'] = created;
    const parent = inv['parent'] as { subscription_details: Obj };
    parent.subscription_details['subscription'] = ids.subscriptionId;
    if (invoice.amount !== undefined) {
      inv['amount_due'] = invoice.amount;
      if (type === 'invoice.paid') inv['amount_paid'] = invoice.amount;
    }
    if (invoice.nextAttempt !== undefined) inv['next_payment_attempt'] = invoice.nextAttempt;
  });
}

export function checkoutCompletedEvent(ids: Ids, created: number, email = 'ada@example.com'): Stripe.Event {
  return base('checkout.session.completed', created, (session) => {
    session['id'] = `cs_test_${randomBytes(12).toString('hex')}`;
    session['client_reference_id'] = ids.userId;
    session['metadata'] = { userId: ids.userId, email };
    session['customer'] = ids.customerId;
    session['subscription'] = ids.subscriptionId;
    session['created'] = created - 60;
  });
}

export function customerDeletedEvent(ids: Ids, created: number): Stripe.Event {
  return base('customer.deleted', created, (customer) => {
    customer['id'] = ids.customerId;
  });
}
