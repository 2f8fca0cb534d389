// Realistic Stripe events for one customer's subscription, built from the fixtures in
// test/fixtures/events (one real-shaped event per type) with the ids, times and state
// of the story being told. Pure: no I/O beyond reading the fixtures once.

import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type Stripe from 'stripe';

type Obj = Record<string, unknown>;

const fixtures = new Map<string, Stripe.Event>();

function fixture(type: string): Stripe.Event {
  let event = fixtures.get(type);
  if (!event) {
    event = JSON.parse(readFileSync(new URL(`../../test/fixtures/events/${type}.json`, import.meta.url), 'utf8')) as Stripe.Event;
    fixtures.set(type, event);
  }
  return structuredClone(event);
}

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A Stripe-looking id: `sub_1Q…`, 24 letters and digits after the prefix. */
export function stripeId(prefix: string, length = 24): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const byte of bytes) out += ALPHANUMERIC[byte % ALPHANUMERIC.length];
  return `${prefix}_${out}`;
}

/** Who the events are about. One customer, one subscription, one price. */
export interface Parties {
  userId: string;
  email: string | null;
  customerId: string;
  subscriptionId: string;
  priceId: string;
  /** Per period, in the smallest currency unit. */
  amount: number;
  currency: string;
}

/** The subscription as Stripe would show it in the event. Times in Unix seconds. */
export interface SubscriptionState {
  status: Stripe.Subscription.Status;
  created: number;
  periodStart: number;
  periodEnd: number;
  cancelAtPeriodEnd: boolean;
  canceledAt: number | null;
  endedAt: number | null;
  trialStart: number | null;
  trialEnd: number | null;
  latestInvoice: string | null;
}

export type SubscriptionEventType =
  | 'customer.subscription.created'
  | 'customer.subscription.updated'
  | 'customer.subscription.deleted'
  | 'customer.subscription.trial_will_end';

/** Stripe's `request`: the API request that caused the event, or none (Stripe's own doing). */
export type Cause = 'automatic' | 'customer';

function event(type: string, created: number, cause: Cause, edit: (object: Obj) => void): Stripe.Event {
  const e = fixture(type);
  e.id = stripeId('evt');
  e.created = created;
  e.livemode = false;
  e.pending_webhooks = 1;
  e.request = cause === 'customer' ? { id: stripeId('req', 14), idempotency_key: randomUUID() } : { id: null, idempotency_key: null };
  edit(e.data.object as unknown as Obj);
  return e;
}

/** A subscription item's id that stays the same across the subscription's events. */
function itemId(subscriptionId: string): string {
  return `si_${subscriptionId.slice(subscriptionId.indexOf('_') + 1, subscriptionId.indexOf('_') + 15)}`;
}

function subscriptionObject(sub: Obj, parties: Parties, state: SubscriptionState): void {
  Object.assign(sub, {
    id: parties.subscriptionId,
    customer: parties.customerId,
    status: state.status,
    created: state.created,
    start_date: state.created,
    billing_cycle_anchor: state.trialEnd ?? state.created,
    cancel_at_period_end: state.cancelAtPeriodEnd,
    cancel_at: state.cancelAtPeriodEnd ? state.periodEnd : null,
    canceled_at: state.canceledAt,
    ended_at: state.endedAt,
    cancellation_details: { comment: null, feedback: null, reason: state.canceledAt === null ? null : 'cancellation_requested' },
    trial_start: state.trialStart,
    trial_end: state.trialEnd,
    latest_invoice: state.latestInvoice,
    currency: parties.currency,
    metadata: { userId: parties.userId, ...(parties.email && { email: parties.email }) },
  });
  const items = sub['items'] as { data: Obj[]; url: string };
  const item = items.data[0] ?? {};
  items.data = [item];
  items.url = `/v1/subscription_items?subscription=${parties.subscriptionId}`;
  Object.assign(item, {
    id: itemId(parties.subscriptionId),
    subscription: parties.subscriptionId,
    created: state.created,
    current_period_start: state.periodStart,
    current_period_end: state.periodEnd,
    quantity: 1,
  });
  for (const key of ['price', 'plan']) {
    const price = item[key] as Obj;
    price['id'] = parties.priceId;
    price['currency'] = parties.currency;
    price[key === 'price' ? 'unit_amount' : 'amount'] = parties.amount;
    price[key === 'price' ? 'unit_amount_decimal' : 'amount_decimal'] = String(parties.amount);
  }
}

/**
 * A customer.subscription.* event. `previous` is what changed, as Stripe reports it in
 * `data.previous_attributes` on `.updated`.
 */
export function subscriptionEvent(
  type: SubscriptionEventType,
  parties: Parties,
  created: number,
  state: SubscriptionState,
  options: { previous?: Obj; cause?: Cause } = {},
): Stripe.Event {
  const e = event(type, created, options.cause ?? 'automatic', (sub) => subscriptionObject(sub, parties, state));
  const data = e.data as { previous_attributes?: Obj };
  if (type === 'customer.subscription.updated' && options.previous) data.previous_attributes = options.previous;
  else delete data.previous_attributes;
  return e;
}

export type InvoiceEventType = 'invoice.paid' | 'invoice.payment_failed' | 'invoice.payment_action_required';

export interface InvoiceState {
  id: string;
  billingReason: 'subscription_create' | 'subscription_cycle';
  periodStart: number;
  periodEnd: number;
  amount: number;
  attemptCount: number;
  nextPaymentAttempt: number | null;
}

export function invoiceEvent(type: InvoiceEventType, parties: Parties, created: number, invoice: InvoiceState): Stripe.Event {
  const paid = type === 'invoice.paid';
  return event(type, created, 'automatic', (inv) => {
    const hosted = `https://invoice.stripe.com/i/acct_local/test_${invoice.id.slice(3)}`;
    Object.assign(inv, {
      id: invoice.id,
      customer: parties.customerId,
      customer_email: parties.email,
      created: invoice.periodStart,
      effective_at: invoice.periodStart,
      currency: parties.currency,
      billing_reason: invoice.billingReason,
      status: paid ? 'paid' : 'open',
      amount_due: invoice.amount,
      amount_paid: paid ? invoice.amount : 0,
      amount_remaining: paid ? 0 : invoice.amount,
      subtotal: invoice.amount,
      subtotal_excluding_tax: invoice.amount,
      total: invoice.amount,
      total_excluding_tax: invoice.amount,
      attempt_count: invoice.attemptCount,
      attempted: invoice.amount > 0,
      next_payment_attempt: paid ? null : invoice.nextPaymentAttempt,
      period_start: invoice.periodStart,
      period_end: invoice.periodStart,
      hosted_invoice_url: hosted,
      invoice_pdf: `${hosted}/pdf`,
      number: `LOCAL-${invoice.id.slice(3, 11).toUpperCase()}`,
      status_transitions: { finalized_at: invoice.periodStart, marked_uncollectible_at: null, paid_at: paid ? created : null, voided_at: null },
      webhooks_delivered_at: created,
    });
    const metadata = { userId: parties.userId, ...(parties.email && { email: parties.email }) };
    (inv['parent'] as { subscription_details: Obj }).subscription_details = { metadata, subscription: parties.subscriptionId };
    const lines = inv['lines'] as { data: Obj[]; url: string };
    const line = lines.data[0] ?? {};
    lines.data = [line];
    lines.url = `/v1/invoices/${invoice.id}/lines`;
    Object.assign(line, {
      id: stripeId('il'),
      amount: invoice.amount,
      currency: parties.currency,
      invoice: invoice.id,
      metadata,
      period: { start: invoice.periodStart, end: invoice.periodEnd },
    });
    const details = (line['parent'] as { subscription_item_details: Obj }).subscription_item_details;
    details['subscription'] = parties.subscriptionId;
    details['subscription_item'] = itemId(parties.subscriptionId);
    const pricing = line['pricing'] as { price_details: Obj };
    pricing.price_details['price'] = parties.priceId;
  });
}

/** The session that started the subscription: links the user to the customer. */
export function checkoutSessionCompletedEvent(
  parties: Parties,
  created: number,
  session: { id?: string; invoiceId: string | null; amountTotal: number; appUrl?: string },
): Stripe.Event {
  return event('checkout.session.completed', created, 'automatic', (cs) => {
    const appUrl = session.appUrl ?? 'http://localhost:8888';
    Object.assign(cs, {
      id: session.id ?? stripeId('cs_test', 58),
      created: created - 60,
      expires_at: created - 60 + 24 * 3600,
      client_reference_id: parties.userId,
      customer: parties.customerId,
      customer_email: null,
      customer_details: { ...(cs['customer_details'] as Obj), email: parties.email },
      metadata: { userId: parties.userId, ...(parties.email && { email: parties.email }) },
      subscription: parties.subscriptionId,
      invoice: session.invoiceId,
      currency: parties.currency,
      amount_subtotal: session.amountTotal,
      amount_total: session.amountTotal,
      payment_status: session.amountTotal > 0 ? 'paid' : 'no_payment_required',
      success_url: `${appUrl}/dashboard?checkout=success&session_id={CHECKOUT_SESSION_ID}`,
      cancel_url: `${appUrl}/dashboard?checkout=canceled`,
    });
  });
}
