// What Stripe sends, event by event, when a customer subscribes, renews, fails to pay,
// recovers, cancels or starts a trial: `stripe trigger` for this backend, offline.
//
// A flow continues the story the local database already tells (the user's customer,
// their current subscription, its period and last invoice), so `renew` renews the
// subscription `subscribe` created and `cancel` cancels it. Event times start after
// the newest event already applied to that subscription and go up by a second per
// event: the webhook keeps only newer state (see the subscription lifecycle migration).

import type pg from 'pg';
import type Stripe from 'stripe';
import {
  checkoutSessionCompletedEvent,
  invoiceEvent,
  stripeId,
  subscriptionEvent,
  subscriptionScheduleEvent,
  type Parties,
  type SubscriptionState,
} from './stripe-events.ts';

export const FLOWS = {
  subscribe: 'pays at Checkout: customer.subscription.created (incomplete), invoice.paid, customer.subscription.updated (active), checkout.session.completed',
  trial: 'starts a 14-day trial at Checkout: customer.subscription.created (trialing), invoice.paid (0), checkout.session.completed',
  'trial-will-end': 'Stripe\'s reminder, three days before a trial ends: customer.subscription.trial_will_end',
  renew: 'the next period is paid: customer.subscription.updated (new period, active), invoice.paid',
  'payment-failed': 'the renewal (or its retry) is declined: invoice.payment_failed, customer.subscription.updated (past_due)',
  recover: 'a retry succeeds: invoice.paid, customer.subscription.updated (active)',
  'first-payment-declined': 'the card at Checkout attaches but is declined: customer.subscription.created (incomplete), invoice.payment_failed; again on the same invoice if already incomplete',
  'first-payment-requires-action': 'the card at Checkout needs 3-D Secure: customer.subscription.created (incomplete), invoice.payment_action_required',
  'first-payment-paid': 'an incomplete first payment succeeds (another card, or authenticated): invoice.paid, customer.subscription.updated (active), checkout.session.completed',
  'switch-price': 'switches plan or interval now, in the portal: customer.subscription.updated (the new price), invoice.paid (the proration) unless trialing',
  'cancel-at-period-end': 'cancels in the portal: customer.subscription.updated (cancel_at_period_end)',
  'schedule-price-change': 'a downgrade or shorter interval in the portal waits for the period\'s end: subscription_schedule.created (this price until then, the new one after)',
  'release-schedule': 'the scheduled change is dropped (e.g. another plan chosen now): subscription_schedule.released',
  uncancel: 'keeps a subscription that was canceling (portal: "Renew"): customer.subscription.updated (cancel_at_period_end false)',
  cancel: 'the subscription ends now: customer.subscription.deleted (canceled)',
  'checkout.session.completed': 'the seed\'s single event: links the user to a new subscription, provisionally active',
} as const;

export type Flow = keyof typeof FLOWS;

export function isFlow(name: string | undefined): name is Flow {
  return name !== undefined && Object.hasOwn(FLOWS, name);
}

/** The flow does not fit the user's stored state (e.g. `renew` without a subscription). */
export class FlowError extends Error {
  override name = 'FlowError';
}

/** What the local database holds for a user. Times in Unix seconds. */
export interface StoredBilling {
  customerId: string | null;
  email: string | null;
  subscription: {
    id: string;
    status: Stripe.Subscription.Status;
    priceId: string | null;
    created: number | null;
    periodStart: number | null;
    periodEnd: number | null;
    cancelAtPeriodEnd: boolean;
    canceledAt: number | null;
    trialStart: number | null;
    trialEnd: number | null;
    latestInvoiceId: string | null;
    lastPaymentAmount: number | null;
    lastPaymentCurrency: string | null;
    /** Its item's quantity (seats), as the last event said. */
    quantity: number | null;
  } | null;
  /** The newest event time stored for that subscription (state, invoice or trial notice). */
  lastEventAt: number | null;
}

interface Row {
  customer_id: string | null;
  email: string | null;
  subscription_id: string | null;
  status: Stripe.Subscription.Status | null;
  price_id: string | null;
  stripe_created_at: Date | null;
  current_period_start: Date | null;
  current_period_end: Date | null;
  cancel_at_period_end: boolean | null;
  canceled_at: Date | null;
  trial_start: Date | null;
  trial_end: Date | null;
  latest_invoice_id: string | null;
  last_payment_amount: string | null;
  last_payment_currency: string | null;
  quantity: number | null;
  last_event_at: Date | null;
}

const seconds = (date: Date | null): number | null => (date ? Math.floor(date.getTime() / 1000) : null);

/** Reads the subject's customer and current subscription (the one the API shows) as a
 *  superuser: a user's, or a team's by its id. */
export async function readStoredBilling(db: pg.ClientBase | pg.Pool, userId: string): Promise<StoredBilling> {
  const { rows } = await db.query<Row>(
    `select c.stripe_customer_id as customer_id, c.email,
            a.stripe_subscription_id as subscription_id, a.status, s.price_id, s.stripe_created_at,
            s.current_period_start, s.current_period_end, a.cancel_at_period_end, s.canceled_at,
            s.trial_start, s.trial_end, s.latest_invoice_id, s.last_payment_amount, s.last_payment_currency, s.quantity,
            greatest(s.state_event_created, s.invoice_event_created, s.trial_will_end_at) as last_event_at
       from (select $1::uuid as user_id) u
       left join public.billing_customers c on c.user_id = u.user_id
       left join public.billing_accounts a on a.user_id = u.user_id
       left join public.billing_subscriptions s on s.stripe_subscription_id = a.stripe_subscription_id`,
    [userId],
  );
  const row = rows[0];
  if (!row) return { customerId: null, email: null, subscription: null, lastEventAt: null };
  return {
    customerId: row.customer_id,
    email: row.email,
    subscription:
      row.subscription_id && row.status
        ? {
            id: row.subscription_id,
            status: row.status,
            priceId: row.price_id,
            created: seconds(row.stripe_created_at),
            periodStart: seconds(row.current_period_start),
            periodEnd: seconds(row.current_period_end),
            cancelAtPeriodEnd: row.cancel_at_period_end ?? false,
            canceledAt: seconds(row.canceled_at),
            trialStart: seconds(row.trial_start),
            trialEnd: seconds(row.trial_end),
            latestInvoiceId: row.latest_invoice_id,
            lastPaymentAmount: row.last_payment_amount === null ? null : Number(row.last_payment_amount),
            lastPaymentCurrency: row.last_payment_currency,
            quantity: row.quantity,
          }
        : null,
    lastEventAt: seconds(row.last_event_at),
  };
}

/** A price as the subscription's item carries it. */
export interface FlowPrice {
  id: string;
  /** Per period, in the smallest currency unit. */
  amount: number;
  currency: string;
  interval: Interval;
  productId?: string;
}

export type Interval = 'month' | 'year';

export interface FlowOptions {
  /** The buyer: metadata.userId and the session's client_reference_id. */
  userId: string;
  /** A team's subscription: the team (metadata.teamId), whose billing `stored` is. */
  teamId?: string;
  /** The subscription's quantity (seats): a new one's, as Checkout's line item has it;
   *  default the stored subscription's, else 1. */
  quantity?: number;
  /** For metadata and the checkout session; else the stored one. */
  email?: string | null;
  /** The price a new subscription is for (STRIPE_PRICE_ID). */
  priceId: string;
  /** Per period and unit (seat), in the smallest currency unit; default 900 (the fixtures' €9.00). */
  amount?: number;
  currency?: string;
  /** Unix seconds; default now. Events start at max(now, the newest stored event + 1). */
  now?: number;
  /** Where Checkout would have returned to (the session's success_url). */
  appUrl?: string;
  /** The billing interval of the subscription's price (default month): how long a period is. */
  interval?: Interval;
  /** The price's product (default: the fixtures'). */
  productId?: string;
  /** A trial's length (default 14 days). */
  trialDays?: number;
  /** The Checkout Session that made the subscription, as Checkout created it. */
  checkout?: { sessionId: string; successUrl: string; cancelUrl: string };
  /** switch-price: the price switched to now; schedule-price-change and renew: the price a
   *  change scheduled for the period's end switches to. */
  newPrice?: FlowPrice;
  /** The subscription schedule holding that change (renew releases it once it is done; release-schedule drops it). */
  scheduleId?: string;
}

const DAY = 86_400;
const TRIAL_DAYS = 14;
const RETRY_AFTER_DAYS = 3;

/** Stripe's monthly billing: the same day next month, or the month's last day. */
export function addMonth(at: number): number {
  const date = new Date(at * 1000);
  const dayOfMonth = date.getUTCDate();
  date.setUTCMonth(date.getUTCMonth() + 1);
  if (date.getUTCDate() !== dayOfMonth) date.setUTCDate(0);
  return Math.floor(date.getTime() / 1000);
}

/** Stripe's yearly billing: the same day next year (28 February after a 29th). */
export function addYear(at: number): number {
  const date = new Date(at * 1000);
  const dayOfMonth = date.getUTCDate();
  date.setUTCFullYear(date.getUTCFullYear() + 1);
  if (date.getUTCDate() !== dayOfMonth) date.setUTCDate(0);
  return Math.floor(date.getTime() / 1000);
}

export function addPeriod(at: number, interval: Interval): number {
  return interval === 'year' ? addYear(at) : addMonth(at);
}

const ENDED: readonly string[] = ['canceled', 'incomplete_expired'];

export interface PlannedFlow {
  customerId: string;
  subscriptionId: string;
  /** In the order Stripe sends them, `created` going up a second at a time. */
  events: Stripe.Event[];
}

/** The events of `flow` for this user, continuing what `stored` says. Throws FlowError if it does not fit. */
export function planFlow(flow: Flow, stored: StoredBilling, options: FlowOptions): PlannedFlow {
  const events = flowEvents(flow, stored, options);
  const ids = events[0] && storyOf(events[0]);
  if (!ids) throw new Error(`${flow}: its first event names no customer and subscription`);
  return { ...ids, events };
}

/** The customer and subscription an event of these flows is about. */
export function storyOf(event: Stripe.Event): { customerId: string; subscriptionId: string } | undefined {
  const object = event.data.object as {
    object?: string;
    id?: string;
    customer?: unknown;
    subscription?: unknown;
    released_subscription?: unknown;
    parent?: { subscription_details?: { subscription?: unknown } };
  };
  const subscription =
    object.object === 'subscription'
      ? object.id
      : object.object === 'invoice'
        ? object.parent?.subscription_details?.subscription
        : (object.subscription ?? object.released_subscription);
  return typeof object.customer === 'string' && typeof subscription === 'string' ? { customerId: object.customer, subscriptionId: subscription } : undefined;
}

function flowEvents(flow: Flow, stored: StoredBilling, options: FlowOptions): Stripe.Event[] {
  const now = options.now ?? Math.floor(Date.now() / 1000);
  let clock = Math.max(now, (stored.lastEventAt ?? 0) + 1);
  const tick = () => clock++;
  const current = stored.subscription && !ENDED.includes(stored.subscription.status) ? stored.subscription : null;
  const quantity = options.quantity ?? current?.quantity ?? 1;
  // One unit's price; an invoice charges it per seat (`due`).
  const amount = options.amount ?? (current?.lastPaymentAmount ? Math.round(current.lastPaymentAmount / quantity) : 900);
  const due = (unit: number) => unit * quantity;
  const email = options.email ?? stored.email;

  const interval = options.interval ?? 'month';
  const trialDays = options.trialDays ?? TRIAL_DAYS;
  const parties = (subscriptionId: string, priceId: string, currency: string): Parties => ({
    userId: options.userId,
    ...(options.teamId && { teamId: options.teamId }),
    email,
    customerId: stored.customerId ?? stripeId('cus', 14),
    subscriptionId,
    priceId,
    amount,
    currency,
    quantity,
    ...(options.productId && { productId: options.productId }),
  });
  const sessionOf = (invoiceId: string | null) => ({
    invoiceId,
    ...(options.appUrl && { appUrl: options.appUrl }),
    ...(options.checkout && { id: options.checkout.sessionId, successUrl: options.checkout.successUrl, cancelUrl: options.checkout.cancelUrl }),
  });

  const newSubscription = (first: 'paid' | 'trial' | 'declined' | 'requires-action'): Stripe.Event[] => {
    if (current) {
      throw new FlowError(`user ${options.userId} already has a subscription (${current.status}); Checkout would refuse a second one. Try renew, payment-failed or cancel.`);
    }
    const trial = first === 'trial';
    const p = parties(stripeId('sub'), options.priceId, options.currency ?? 'eur');
    const invoiceId = stripeId('in');
    const start = tick();
    const state: SubscriptionState = {
      status: trial ? 'trialing' : 'incomplete',
      created: start,
      periodStart: start,
      periodEnd: trial ? start + trialDays * DAY : addPeriod(start, interval),
      cancelAtPeriodEnd: false,
      canceledAt: null,
      endedAt: null,
      trialStart: trial ? start : null,
      trialEnd: trial ? start + trialDays * DAY : null,
      latestInvoice: invoiceId,
    };
    const invoice = { id: invoiceId, billingReason: 'subscription_create' as const, periodStart: start, periodEnd: state.periodEnd, attemptCount: 1, nextPaymentAttempt: null };
    const created = subscriptionEvent('customer.subscription.created', p, start, state);
    switch (first) {
      case 'trial':
        return [
          created,
          invoiceEvent('invoice.paid', p, tick(), { ...invoice, amount: 0 }),
          checkoutSessionCompletedEvent(p, tick(), { ...sessionOf(invoiceId), amountTotal: 0 }),
        ];
      // A first invoice is not retried on a schedule: the customer tries again at Checkout.
      case 'declined':
        return [created, invoiceEvent('invoice.payment_failed', p, tick(), { ...invoice, amount: due(amount) })];
      case 'requires-action':
        return [created, invoiceEvent('invoice.payment_action_required', p, tick(), { ...invoice, amount: due(amount) })];
      case 'paid':
        return [
          created,
          invoiceEvent('invoice.paid', p, tick(), { ...invoice, amount: due(amount) }),
          subscriptionEvent('customer.subscription.updated', p, tick(), { ...state, status: 'active' }, { previous: { status: 'incomplete' } }),
          checkoutSessionCompletedEvent(p, tick(), { ...sessionOf(invoiceId), amountTotal: due(amount) }),
        ];
    }
  };

  if (flow === 'subscribe') return newSubscription('paid');
  if (flow === 'trial') return newSubscription('trial');
  if (!current && flow === 'first-payment-declined') return newSubscription('declined');
  if (!current && flow === 'first-payment-requires-action') return newSubscription('requires-action');
  if (flow === 'checkout.session.completed') {
    const p = parties(stripeId('sub'), options.priceId, options.currency ?? 'eur');
    return [checkoutSessionCompletedEvent(p, tick(), { ...sessionOf(null), amountTotal: due(amount) })];
  }

  if (!current || !stored.customerId) {
    const had = stored.subscription ? `its subscription is ${stored.subscription.status}` : 'it has no subscription';
    throw new FlowError(`${flow} needs a live subscription, and ${had} for user ${options.userId}. Run subscribe (or trial) first.`);
  }
  const p = parties(current.id, current.priceId ?? options.priceId, current.lastPaymentCurrency ?? options.currency ?? 'eur');
  const periodStart = current.periodStart ?? clock;
  const periodEnd = current.periodEnd ?? addMonth(periodStart);
  const state: SubscriptionState = {
    status: current.status,
    created: current.created ?? periodStart,
    periodStart,
    periodEnd,
    cancelAtPeriodEnd: current.cancelAtPeriodEnd,
    canceledAt: current.canceledAt,
    endedAt: null,
    trialStart: current.trialStart,
    trialEnd: current.trialEnd,
    latestInvoice: current.latestInvoiceId,
  };
  const requireStatus = (...statuses: Stripe.Subscription.Status[]) => {
    if (!statuses.includes(current.status)) {
      throw new FlowError(`${flow} needs a subscription that is ${statuses.join(' or ')}; user ${options.userId}'s is ${current.status}.`);
    }
  };
  const requireRenewing = () => {
    if (current.cancelAtPeriodEnd) {
      throw new FlowError(`user ${options.userId}'s subscription cancels at the end of its period: it will not renew. Run cancel to end it.`);
    }
  };
  // The next period, starting where the current one ends (the renewal date).
  const renewal = (length: Interval = interval): SubscriptionState => ({ ...state, periodStart: periodEnd, periodEnd: addPeriod(periodEnd, length), latestInvoice: stripeId('in') });
  // A schedule of two phases: this price until the period's end, then `to` for a period.
  const schedule = (id: string, to: FlowPrice, status: 'active' | 'released') =>
    subscriptionScheduleEvent(`subscription_schedule.${status === 'active' ? 'created' : 'released'}`, p, tick(), {
      id,
      status,
      phases: [
        { priceId: p.priceId, start: periodStart, end: periodEnd },
        { priceId: to.id, start: periodEnd, end: addPeriod(periodEnd, to.interval) },
      ],
      currentPhase: status === 'active' ? { start: periodStart, end: periodEnd } : null,
    });
  // The incomplete first invoice, tried again at Checkout.
  const firstInvoice = (attemptCount: number) => ({
    id: current.latestInvoiceId ?? stripeId('in'),
    billingReason: 'subscription_create' as const,
    periodStart,
    periodEnd,
    amount: due(amount),
    attemptCount,
    nextPaymentAttempt: null,
  });

  switch (flow) {
    case 'trial-will-end': {
      requireStatus('trialing');
      return [subscriptionEvent('customer.subscription.trial_will_end', p, tick(), state)];
    }
    case 'renew': {
      requireStatus('active', 'trialing');
      requireRenewing();
      // A change scheduled for the period's end (a downgrade) takes effect with the renewal.
      const to = options.newPrice;
      const next: SubscriptionState = { ...renewal(to?.interval), status: 'active' };
      const renewed = to ? { ...p, priceId: to.id, amount: to.amount, currency: to.currency, ...(to.productId && { productId: to.productId }) } : p;
      // The schedule's last phase has begun: it lets the subscription go on by itself.
      const release = () => (to && options.scheduleId ? [schedule(options.scheduleId, to, 'released')] : []);
      return [
        subscriptionEvent('customer.subscription.updated', renewed, tick(), next, {
          previous: { ...(state.status !== 'active' && { status: state.status }), latest_invoice: state.latestInvoice },
        }),
        ...release(),
        invoiceEvent('invoice.paid', renewed, tick(), {
          id: next.latestInvoice ?? stripeId('in'),
          billingReason: 'subscription_cycle',
          periodStart: next.periodStart,
          periodEnd: next.periodEnd,
          amount: due(renewed.amount),
          attemptCount: 1,
          nextPaymentAttempt: null,
        }),
      ];
    }
    case 'first-payment-declined': {
      requireStatus('incomplete');
      return [invoiceEvent('invoice.payment_failed', p, tick(), firstInvoice(2))];
    }
    case 'first-payment-requires-action': {
      requireStatus('incomplete');
      return [invoiceEvent('invoice.payment_action_required', p, tick(), firstInvoice(2))];
    }
    case 'first-payment-paid': {
      requireStatus('incomplete');
      const invoice = firstInvoice(2);
      return [
        invoiceEvent('invoice.paid', p, tick(), invoice),
        subscriptionEvent('customer.subscription.updated', p, tick(), { ...state, status: 'active' }, { previous: { status: 'incomplete' } }),
        checkoutSessionCompletedEvent(p, tick(), { ...sessionOf(invoice.id), amountTotal: due(amount) }),
      ];
    }
    case 'switch-price': {
      requireStatus('active', 'trialing');
      const to = options.newPrice;
      if (!to) throw new FlowError('switch-price needs the price to switch to.');
      if (to.id === p.priceId) throw new FlowError(`user ${options.userId}'s subscription is already on ${to.id}.`);
      const switched = { ...p, priceId: to.id, amount: to.amount, currency: to.currency, ...(to.productId && { productId: to.productId }) };
      const at = tick();
      const previous = { items: { data: [{ price: { id: p.priceId } }] } };
      // In a trial nothing is charged: the trial goes on, on the new price.
      if (current.status === 'trialing') {
        return [subscriptionEvent('customer.subscription.updated', switched, at, state, { previous, cause: 'customer' })];
      }
      // Prorated: the unused part of this period is credited. A new interval starts a new
      // period now (the billing cycle is reset); the same interval keeps the period.
      const total = Math.max(periodEnd - periodStart, 1);
      const unused = Math.min(Math.max(periodEnd - at, 0), total) / total;
      const newPeriod = to.interval !== interval;
      const charge = due(newPeriod ? to.amount - Math.round(p.amount * unused) : Math.round((to.amount - p.amount) * unused));
      const invoiceId = stripeId('in');
      const next: SubscriptionState = newPeriod
        ? { ...state, periodStart: at, periodEnd: addPeriod(at, to.interval), latestInvoice: invoiceId }
        : { ...state, latestInvoice: invoiceId };
      return [
        subscriptionEvent('customer.subscription.updated', switched, at, next, { previous, cause: 'customer' }),
        invoiceEvent('invoice.paid', switched, tick(), {
          id: invoiceId,
          billingReason: 'subscription_update',
          periodStart: next.periodStart,
          periodEnd: next.periodEnd,
          amount: Math.max(charge, 0),
          attemptCount: 1,
          nextPaymentAttempt: null,
        }),
      ];
    }
    case 'schedule-price-change': {
      requireStatus('active', 'trialing');
      requireRenewing();
      if (!options.newPrice) throw new FlowError('schedule-price-change needs the price to change to.');
      return [schedule(options.scheduleId ?? stripeId('sub_sched'), options.newPrice, 'active')];
    }
    case 'release-schedule': {
      if (!options.newPrice || !options.scheduleId) throw new FlowError('release-schedule needs the schedule and its price.');
      return [schedule(options.scheduleId, options.newPrice, 'released')];
    }
    case 'uncancel': {
      requireStatus('active', 'trialing', 'past_due');
      if (!current.cancelAtPeriodEnd) throw new FlowError(`user ${options.userId}'s subscription is not canceling.`);
      return [
        subscriptionEvent(
          'customer.subscription.updated',
          p,
          tick(),
          { ...state, cancelAtPeriodEnd: false, canceledAt: null },
          { previous: { cancel_at_period_end: true, cancel_at: periodEnd, canceled_at: current.canceledAt }, cause: 'customer' },
        ),
      ];
    }
    case 'payment-failed': {
      requireStatus('active', 'trialing', 'past_due');
      if (current.status === 'past_due') {
        // A retry of the same invoice is declined again: the subscription stays past due.
        const at = tick();
        return [
          invoiceEvent('invoice.payment_failed', p, at, {
            id: current.latestInvoiceId ?? stripeId('in'),
            billingReason: 'subscription_cycle',
            periodStart,
            periodEnd,
            amount: due(amount),
            attemptCount: 2,
            nextPaymentAttempt: at + RETRY_AFTER_DAYS * DAY,
          }),
        ];
      }
      requireRenewing();
      const next: SubscriptionState = { ...renewal(), status: 'past_due' };
      const at = tick();
      return [
        invoiceEvent('invoice.payment_failed', p, at, {
          id: next.latestInvoice ?? stripeId('in'),
          billingReason: 'subscription_cycle',
          periodStart: next.periodStart,
          periodEnd: next.periodEnd,
          amount: due(amount),
          attemptCount: 1,
          nextPaymentAttempt: at + RETRY_AFTER_DAYS * DAY,
        }),
        subscriptionEvent('customer.subscription.updated', p, tick(), next, {
          previous: { status: state.status, latest_invoice: state.latestInvoice },
        }),
      ];
    }
    case 'recover': {
      requireStatus('past_due', 'unpaid');
      return [
        invoiceEvent('invoice.paid', p, tick(), {
          id: current.latestInvoiceId ?? stripeId('in'),
          billingReason: 'subscription_cycle',
          periodStart,
          periodEnd,
          amount: due(amount),
          attemptCount: 2,
          nextPaymentAttempt: null,
        }),
        subscriptionEvent('customer.subscription.updated', p, tick(), { ...state, status: 'active' }, { previous: { status: state.status } }),
      ];
    }
    case 'cancel-at-period-end': {
      requireStatus('active', 'trialing', 'past_due');
      if (current.cancelAtPeriodEnd) throw new FlowError(`user ${options.userId}'s subscription already cancels at the end of its period.`);
      const at = tick();
      return [
        subscriptionEvent(
          'customer.subscription.updated',
          p,
          at,
          { ...state, cancelAtPeriodEnd: true, canceledAt: at },
          { previous: { cancel_at_period_end: false, cancel_at: null, canceled_at: null }, cause: 'customer' },
        ),
      ];
    }
    case 'cancel': {
      const at = tick();
      return [subscriptionEvent('customer.subscription.deleted', p, at, { ...state, status: 'canceled', canceledAt: state.canceledAt ?? at, endedAt: at })];
    }
  }
}
