// The one builder of Stripe objects for tests, `npm run stripe:trigger` and the bench:
// realistic events for one customer's subscription, built from the fixtures in
// test/fixtures/events (one real-shaped event per type, in the API version the SDK
// pins) with the ids, times and state of the story being told, and rendered in any API
// version a live webhook endpoint may still use (renderInVersion, below). Pure: no I/O
// beyond reading the fixtures once.

import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type Stripe from 'stripe';
import { PINNED_API_VERSION } from '../../src/stripe/api-version.ts';

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

/** The ids in the fixtures, for tests that read a fixture as it is. */
export const FIXTURE_IDS = {
  userId: '5b0c3f5e-8f4a-4c1e-9d1b-2f6a7c8d9e01',
  customerId: 'cus_TUq3pLrV0aXk9Z',
  subscriptionId: 'sub_1SXqAzLkdIwHu7ixR4tYb8Qp',
  priceId: 'price_1SXq0aLkdIwHu7ixMonthly',
  productId: 'prod_TUq1Analytics',
  email: 'ada@example.com',
} as const;

/** A fresh copy of the fixture event of `type`, as it is: its ids, its times. */
export function fixtureEvent(type: string): Stripe.Event {
  return fixture(type);
}

/** Who the events are about. One customer, one subscription, one price. */
export interface Parties {
  userId: string;
  /** For a team's subscription: the team, beside the buyer (userId), in metadata. */
  teamId?: string;
  email: string | null;
  customerId: string;
  subscriptionId: string;
  priceId: string;
  /** The price's product; the fixtures' product when not given. */
  productId?: string;
  /** Per period, in the smallest currency unit: the price of one unit (a seat). */
  amount: number;
  currency: string;
  /** The subscription item (si_…); one derived from the subscription's id when not given. */
  itemId?: string;
  /** The subscription item's quantity (seats); 1 when not given. */
  quantity?: number;
}

/** The metadata our checkout puts on sessions and subscriptions (src/accounts/checkout.ts). */
function metadataOf(parties: Parties): Record<string, string> {
  return { userId: parties.userId, ...(parties.email && { email: parties.email }), ...(parties.teamId && { teamId: parties.teamId }) };
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
  | 'customer.subscription.paused'
  | 'customer.subscription.resumed'
  | 'customer.subscription.trial_will_end';

/** How the subscription's own fields differ from what our checkout makes. */
export interface SubscriptionVariant {
  /** No metadata.userId, as for a subscription created outside our checkout. */
  withoutUserMetadata?: boolean;
  quantity?: number;
}

/** Stripe's `request`: the API request that caused the event, or none (Stripe's own doing). */
export type Cause = 'automatic' | 'customer';

/** `template`: the fixture to start from, when the type has none of its own (an invoice's
 *  other events start from invoice.paid's). `idempotencyKey`: the causing request's. */
function event(
  type: string,
  created: number,
  cause: Cause,
  edit: (object: Obj) => void,
  options: { template?: string; idempotencyKey?: string } = {},
): Stripe.Event {
  const e = fixture(options.template ?? type);
  e.type = type as Stripe.Event.Type;
  e.id = stripeId('evt');
  e.created = created;
  e.livemode = false;
  e.pending_webhooks = 1;
  e.request = cause === 'customer' ? { id: stripeId('req', 14), idempotency_key: options.idempotencyKey ?? randomUUID() } : { id: null, idempotency_key: null };
  edit(e.data.object as unknown as Obj);
  return e;
}

/** A subscription item's id that stays the same across the subscription's events (the
 *  local portal names it when it changes the quantity, as Stripe's portal does). */
export function itemId(subscriptionId: string): string {
  return `si_${subscriptionId.slice(subscriptionId.indexOf('_') + 1, subscriptionId.indexOf('_') + 15)}`;
}

function subscriptionObject(sub: Obj, parties: Parties, state: SubscriptionState, variant: SubscriptionVariant): void {
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
    metadata: variant.withoutUserMetadata ? {} : metadataOf(parties),
    pause_collection: null,
  });
  const items = sub['items'] as { data: Obj[]; url: string };
  const item = items.data[0] ?? {};
  items.data = [item];
  items.url = `/v1/subscription_items?subscription=${parties.subscriptionId}`;
  Object.assign(item, {
    id: parties.itemId ?? itemId(parties.subscriptionId),
    subscription: parties.subscriptionId,
    created: state.created,
    current_period_start: state.periodStart,
    current_period_end: state.periodEnd,
    quantity: variant.quantity ?? parties.quantity ?? 1,
  });
  for (const key of ['price', 'plan']) {
    const price = item[key] as Obj;
    price['id'] = parties.priceId;
    price['currency'] = parties.currency;
    price[key === 'price' ? 'unit_amount' : 'amount'] = parties.amount;
    price[key === 'price' ? 'unit_amount_decimal' : 'amount_decimal'] = String(parties.amount);
    price['product'] = parties.productId ?? FIXTURE_IDS.productId;
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
  options: { previous?: Obj; cause?: Cause } & SubscriptionVariant = {},
): Stripe.Event {
  const e = event(type, created, options.cause ?? 'automatic', (sub) => subscriptionObject(sub, parties, state, options));
  const data = e.data as { previous_attributes?: Obj };
  if (type === 'customer.subscription.updated' && options.previous) data.previous_attributes = options.previous;
  else delete data.previous_attributes;
  return e;
}

export type InvoiceEventType = 'invoice.paid' | 'invoice.payment_failed' | 'invoice.payment_action_required';

export interface InvoiceState {
  id: string;
  billingReason: 'subscription_create' | 'subscription_cycle' | 'subscription_update';
  periodStart: number;
  periodEnd: number;
  amount: number;
  attemptCount: number;
  nextPaymentAttempt: number | null;
  /** Its lines; one for the whole amount and period when not given. */
  lines?: InvoiceLine[];
}

/** An invoice line; `invoiceItem` names the proration invoice item it bills, if it does. */
export interface InvoiceLine {
  amount: number;
  quantity: number;
  description: string | null;
  periodStart: number;
  periodEnd: number;
  invoiceItem: string | null;
}

export function invoiceEvent(type: InvoiceEventType, parties: Parties, created: number, invoice: InvoiceState): Stripe.Event {
  return invoiceEventOf(type, parties, created, invoice);
}

/** An invoice's event of any type; the ones without a fixture of their own (created,
 *  finalized) start from invoice.paid's, as a draft or an open invoice. */
function invoiceEventOf(type: InvoiceEventType | 'invoice.created' | 'invoice.finalized', parties: Parties, created: number, invoice: InvoiceState): Stripe.Event {
  const paid = type === 'invoice.paid';
  const template = type === 'invoice.created' || type === 'invoice.finalized' ? 'invoice.paid' : type;
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
      status: paid ? 'paid' : type === 'invoice.created' ? 'draft' : 'open',
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
      status_transitions: { finalized_at: type === 'invoice.created' ? null : invoice.periodStart, marked_uncollectible_at: null, paid_at: paid ? created : null, voided_at: null },
      webhooks_delivered_at: created,
    });
    const metadata = metadataOf(parties);
    (inv['parent'] as { subscription_details: Obj }).subscription_details = { metadata, subscription: parties.subscriptionId };
    const lines = inv['lines'] as { data: Obj[]; url: string; total_count: number };
    const template = lines.data[0] ?? {};
    const wanted: InvoiceLine[] = invoice.lines ?? [
      { amount: invoice.amount, quantity: 1, description: null, periodStart: invoice.periodStart, periodEnd: invoice.periodEnd, invoiceItem: null },
    ];
    lines.data = wanted.map((want) => {
      const line = structuredClone(template);
      Object.assign(line, {
        id: stripeId('il'),
        amount: want.amount,
        currency: parties.currency,
        invoice: invoice.id,
        metadata,
        period: { start: want.periodStart, end: want.periodEnd },
        quantity: want.quantity,
        ...(want.description !== null && { description: want.description }),
      });
      const details = (line['parent'] as { subscription_item_details: Obj }).subscription_item_details;
      details['subscription'] = parties.subscriptionId;
      details['subscription_item'] = parties.itemId ?? itemId(parties.subscriptionId);
      details['invoice_item'] = want.invoiceItem;
      details['proration'] = want.invoiceItem !== null;
      const pricing = line['pricing'] as { price_details: Obj };
      pricing.price_details['price'] = parties.priceId;
      pricing.price_details['product'] = parties.productId ?? FIXTURE_IDS.productId;
      return line;
    });
    lines.total_count = lines.data.length;
    lines.url = `/v1/invoices/${invoice.id}/lines`;
  }, { template });
}

/** A metered item's usage on a renewal's invoice: Stripe bills it in arrears, for the
 *  period that closed, beside the licensed items of the period that starts. */
export interface UsageLine {
  priceId: string;
  productId: string | null;
  /** Billed units (after transform_quantity). */
  quantity: number;
  unitAmountDecimal: string;
  amount: number;
  description: string;
  periodStart: number;
  periodEnd: number;
}

/** The metered item of a subscription, an id that stays the same across its events. */
export function meteredItemId(subscriptionId: string): string {
  return `${itemId(subscriptionId)}M`;
}

/**
 * The invoice event with these usage lines added after its own, its totals raised by
 * their amounts. `draft`: the same invoice as invoice.created shows it, a new event of
 * that type (Stripe creates the renewal's invoice as a draft and finalizes it about an
 * hour later, so usage reported before then is still billed on it).
 */
export function invoiceWithUsage(input: Stripe.Event, lines: readonly UsageLine[], options: { draft?: boolean } = {}): Stripe.Event {
  const e = structuredClone(input);
  const inv = e.data.object as unknown as Obj & { lines: { data: Obj[]; total_count: number } };
  const [template] = inv.lines.data;
  const added = lines.reduce((sum, line) => sum + line.amount, 0);
  for (const want of lines) {
    const line = structuredClone(template ?? {});
    const details = (line['parent'] as { subscription_item_details?: Obj } | undefined)?.subscription_item_details ?? {};
    Object.assign(line, { id: stripeId('il'), amount: want.amount, description: want.description, period: { start: want.periodStart, end: want.periodEnd }, quantity: want.quantity });
    details['subscription_item'] = typeof details['subscription'] === 'string' ? meteredItemId(details['subscription']) : null;
    details['invoice_item'] = null;
    details['proration'] = false;
    line['pricing'] = { type: 'price_details', price_details: { price: want.priceId, product: want.productId }, unit_amount_decimal: want.unitAmountDecimal };
    inv.lines.data.push(line);
  }
  inv.lines.total_count = inv.lines.data.length;
  for (const key of ['amount_due', 'subtotal', 'subtotal_excluding_tax', 'total', 'total_excluding_tax']) inv[key] = Number(inv[key] ?? 0) + added;
  if (inv['status'] === 'paid') inv['amount_paid'] = Number(inv['amount_paid'] ?? 0) + added;
  else inv['amount_remaining'] = Number(inv['amount_remaining'] ?? 0) + added;
  if (!options.draft) return e;
  e.id = stripeId('evt');
  e.type = 'invoice.created';
  Object.assign(inv, {
    status: 'draft',
    amount_paid: 0,
    amount_remaining: inv['amount_due'],
    attempted: false,
    status_transitions: { finalized_at: null, marked_uncollectible_at: null, paid_at: null, voided_at: null },
  });
  return e;
}

/** The session that started the subscription: links the user to the customer. */
export function checkoutSessionCompletedEvent(
  parties: Parties,
  created: number,
  session: { id?: string; invoiceId: string | null; amountTotal: number; appUrl?: string; successUrl?: string; cancelUrl?: string },
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
      metadata: metadataOf(parties),
      subscription: parties.subscriptionId,
      invoice: session.invoiceId,
      currency: parties.currency,
      amount_subtotal: session.amountTotal,
      amount_total: session.amountTotal,
      payment_status: session.amountTotal > 0 ? 'paid' : 'no_payment_required',
      success_url: session.successUrl ?? `${appUrl}/dashboard?checkout=success&session_id={CHECKOUT_SESSION_ID}`,
      cancel_url: session.cancelUrl ?? `${appUrl}/dashboard?checkout=canceled`,
    });
  });
}

/** The customer was deleted (in the Dashboard, or by the API). */
export function customerDeletedEvent(parties: Pick<Parties, 'customerId' | 'email'>, created: number): Stripe.Event {
  return event('customer.deleted', created, 'customer', (customer) => {
    Object.assign(customer, { id: parties.customerId, email: parties.email, deleted: true });
  });
}

/** The features Stripe says a customer has now (Entitlements), by their lookup keys. */
export function entitlementSummaryEvent(customerId: string, created: number, lookupKeys: readonly string[]): Stripe.Event {
  return event('entitlements.active_entitlement_summary.updated', created, 'automatic', (summary) => {
    summary['customer'] = customerId;
    const list = summary['entitlements'] as { data: Obj[]; url: string };
    list.url = `/v1/customer/${customerId}/entitlements`;
    list.data = lookupKeys.map((key) => ({
      id: stripeId('ent_test', 20),
      object: 'entitlements.active_entitlement',
      feature: stripeId('feat_test', 20),
      livemode: false,
      lookup_key: key,
    }));
  });
}

export type SubscriptionScheduleEventType =
  | 'subscription_schedule.created'
  | 'subscription_schedule.updated'
  | 'subscription_schedule.released'
  | 'subscription_schedule.canceled'
  | 'subscription_schedule.completed'
  | 'subscription_schedule.aborted';

/** A subscription schedule as Stripe shows it: phases of prices, in time order. */
export interface ScheduleState {
  id: string;
  status: 'not_started' | 'active' | 'completed' | 'released' | 'canceled';
  phases: { priceId: string; start: number; end: number }[];
  /** The phase in force now (null before the schedule starts, and after it ends). */
  currentPhase: { start: number; end: number } | null;
}

/** A subscription_schedule.* event, e.g. the billing portal scheduling a downgrade at the
 *  period's end: a first phase on the current price until then, a second on the new one. */
export function subscriptionScheduleEvent(
  type: SubscriptionScheduleEventType,
  parties: Pick<Parties, 'customerId' | 'subscriptionId' | 'quantity'>,
  created: number,
  schedule: ScheduleState,
  options: { cause?: Cause } = {},
): Stripe.Event {
  return event(type, created, options.cause ?? 'customer', (obj) => {
    const [template] = obj['phases'] as Obj[];
    Object.assign(obj, {
      id: schedule.id,
      customer: parties.customerId,
      subscription: schedule.status === 'released' ? null : parties.subscriptionId,
      released_subscription: schedule.status === 'released' ? parties.subscriptionId : null,
      status: schedule.status,
      created,
      current_phase: schedule.currentPhase && { start_date: schedule.currentPhase.start, end_date: schedule.currentPhase.end },
      canceled_at: schedule.status === 'canceled' ? created : null,
      completed_at: schedule.status === 'completed' ? created : null,
      released_at: schedule.status === 'released' ? created : null,
      phases: schedule.phases.map((phase) => {
        const copy = structuredClone(template ?? {});
        const [item] = (copy['items'] as Obj[] | undefined) ?? [{}];
        return { ...copy, start_date: phase.start, end_date: phase.end, items: [{ ...item, price: phase.priceId, plan: phase.priceId, quantity: parties.quantity ?? 1 }] };
      }),
    });
  });
}

// Quantity changes ---------------------------------------------------------------------

/** Stripe's proration_behavior on a subscription update. */
export type ProrationBehavior = 'create_prorations' | 'always_invoice' | 'none';

export interface QuantityChange {
  /** The subscription as Stripe holds it after the change (Stripe's shape): the item at `to`. */
  subscription: Obj;
  itemId: string;
  from: number;
  to: number;
  proration: ProrationBehavior;
  /** Unix seconds. */
  at: number;
  /** The update request's, which the events name as their cause. */
  idempotencyKey?: string;
}

const DATE = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });

/**
 * What Stripe sends when an item's quantity changes within a period: the subscription
 * updated (previous_attributes: the item at its old quantity), and the proration, two
 * invoice items (the unused time at the old quantity credited, the rest of the period at
 * the new one charged) that wait for the next invoice (create_prorations), or that are
 * invoiced and charged at once (always_invoice: invoice.created, .finalized, .paid; a
 * credit larger than the charge goes to the customer's balance and the invoice is 0).
 * The subscription's latest_invoice is then that invoice.
 */
export function quantityChangeEvents(change: QuantityChange): Stripe.Event[] {
  const sub = structuredClone(change.subscription);
  const items = (sub['items'] as { data: Obj[] }).data;
  const item = items.find((i) => i['id'] === change.itemId) ?? items[0] ?? {};
  const price = (item['price'] ?? {}) as Obj;
  const metadata = (sub['metadata'] ?? {}) as Record<string, string>;
  const subscriptionId = String(sub['id']);
  const parties: Parties = {
    userId: metadata['userId'] ?? '',
    ...(metadata['teamId'] && { teamId: metadata['teamId'] }),
    email: metadata['email'] ?? null,
    customerId: String(sub['customer']),
    subscriptionId,
    priceId: String(price['id']),
    productId: String(price['product']),
    amount: Number(price['unit_amount'] ?? 0),
    currency: String(price['currency'] ?? sub['currency']),
    itemId: change.itemId,
  };
  const at = change.at;
  const start = Number(item['current_period_start'] ?? sub['current_period_start'] ?? at);
  const end = Number(item['current_period_end'] ?? sub['current_period_end'] ?? at);
  const left = end > start ? Math.min(Math.max((end - at) / (end - start), 0), 1) : 0;
  const cause = { idempotencyKey: change.idempotencyKey ?? randomUUID() };
  const invoiceId = change.proration === 'always_invoice' && change.from !== change.to ? stripeId('in') : null;
  const previousInvoice = sub['latest_invoice'] ?? null;
  if (invoiceId) sub['latest_invoice'] = invoiceId;

  const updated = event('customer.subscription.updated', at, 'customer', (object) => {
    for (const key of Object.keys(object)) delete object[key];
    Object.assign(object, sub);
  }, cause);
  (updated.data as { previous_attributes?: Obj }).previous_attributes = {
    items: { data: items.map((i) => (i === item ? { ...i, quantity: change.from } : i)) },
    ...(invoiceId && { latest_invoice: previousInvoice }),
  };
  if (change.proration === 'none' || change.from === change.to) return [updated];

  const after = DATE.format(new Date(at * 1000));
  const proration = (quantity: number, sign: 1 | -1, description: string) => {
    const amount = sign * Math.round(parties.amount * quantity * left);
    const id = stripeId('ii');
    const created = event('invoiceitem.created', at, 'customer', (ii) => {
      Object.assign(ii, {
        id,
        amount,
        net_amount: amount,
        currency: parties.currency,
        customer: parties.customerId,
        date: at,
        description,
        invoice: invoiceId,
        period: { start: at, end },
        quantity,
        quantity_decimal: String(quantity),
      });
      (ii['parent'] as { subscription_details: Obj }).subscription_details = { subscription: subscriptionId, subscription_item: change.itemId };
      const pricing = ii['pricing'] as { price_details: Obj; unit_amount_decimal: string };
      pricing.price_details = { price: parties.priceId, product: parties.productId };
      pricing.unit_amount_decimal = quantity === 0 ? '0' : String(amount / quantity);
    }, cause);
    return { id, amount, quantity, description, event: created };
  };
  const credit = proration(change.from, -1, `Unused time on ${change.from} × ${parties.productId} after ${after}`);
  const charge = proration(change.to, 1, `Remaining time on ${change.to} × ${parties.productId} after ${after}`);
  const events = [updated, credit.event, charge.event];
  if (!invoiceId) return events;

  const invoice: InvoiceState = {
    id: invoiceId,
    billingReason: 'subscription_update',
    periodStart: at,
    periodEnd: at,
    amount: Math.max(credit.amount + charge.amount, 0),
    attemptCount: 1,
    nextPaymentAttempt: null,
    lines: [credit, charge].map((line) => ({
      amount: line.amount,
      quantity: line.quantity,
      description: line.description,
      periodStart: at,
      periodEnd: end,
      invoiceItem: line.id,
    })),
  };
  return [...events, ...(['invoice.created', 'invoice.finalized', 'invoice.paid'] as const).map((type) => invoiceEventOf(type, parties, at, invoice))];
}

// API versions ------------------------------------------------------------------------
//
// A webhook endpoint renders every event in the API version it was created with. These
// are the versions a live account may still use for its endpoint, oldest first, each
// the first of its release (where Stripe makes breaking changes), ending with the one
// the SDK pins, in which the fixtures are written. What changed, from Stripe's changelog:
//   2024-09-30.acacia  nothing this code reads (the release reworked Terminal, tax, usage billing)
//   2025-03-31.basil   subscription: current_period_start/_end moved onto each item;
//                      discount -> discounts; billing_thresholds gone.
//                      invoice: subscription -> parent.subscription_details.subscription,
//                      subscription_details -> parent.subscription_details; paid,
//                      payment_intent, charge gone (status, payments); lines: price ->
//                      pricing.price_details, subscription/subscription_item/proration ->
//                      parent.subscription_item_details; tax amounts -> total_taxes
//   2025-06-30.basil   subscription.billing_mode added (a monthly, additive version)
//   2025-09-30.clover  new subscriptions default to flexible billing mode
//   2026-03-25.dahlia  checkout session ui_mode: hosted -> hosted_page, embedded -> embedded_page
//   2026-10-28.endive  (the SDK's) checkout session: allowed_payment_method_types added
//                      beside payment_method_types (which the create request lost)

export { PINNED_API_VERSION };

export const API_VERSIONS = [
  '2024-06-20',
  '2024-09-30.acacia',
  '2025-03-31.basil',
  '2025-09-30.clover',
  '2026-03-25.dahlia',
  PINNED_API_VERSION,
] as const;

export type ApiVersion = (typeof API_VERSIONS)[number];

export function isApiVersion(value: string | undefined): value is ApiVersion {
  return (API_VERSIONS as readonly (string | undefined)[]).includes(value);
}

/** Stripe's versions sort by their date prefix. */
function before(version: ApiVersion, release: string): boolean {
  return version.slice(0, 10) < release;
}

/**
 * The same event as an endpoint on `version` would receive it. The fixtures are in
 * the pinned version; each older release undoes what that release changed, newest
 * first, for the objects this backend reads.
 */
export function renderInVersion<E extends Stripe.Event>(input: E, version: ApiVersion): E {
  const event = structuredClone(input) as unknown as Obj & { data: { object: Obj; previous_attributes?: Obj } };
  event['api_version'] = version;
  const object = event.data.object;
  const kind = object['object'];
  if (before(version, '2026-09-30') && kind === 'checkout.session') {
    delete object['allowed_payment_method_types'];
  }
  if (before(version, '2026-03-25') && kind === 'checkout.session') {
    const renamed: Record<string, string> = { hosted_page: 'hosted', embedded_page: 'embedded', elements: 'custom' };
    const mode = object['ui_mode'];
    if (typeof mode === 'string' && renamed[mode]) object['ui_mode'] = renamed[mode];
  }
  if (before(version, '2025-06-30') && kind === 'subscription') {
    delete object['billing_mode'];
  }
  if (before(version, '2025-03-31')) {
    if (kind === 'subscription') subscriptionBeforeBasil(object, event.data.previous_attributes);
    if (kind === 'invoice') invoiceBeforeBasil(object);
    if (kind === 'checkout.session') {
      const collected = object['collected_information'] as Obj | null;
      object['shipping_details'] = collected?.['shipping_details'] ?? null;
      delete object['collected_information'];
    }
  }
  return event as unknown as E;
}

/** Before 2025-03-31.basil the period was the subscription's, not its items'. */
function subscriptionBeforeBasil(sub: Obj, previous: Obj | undefined): void {
  const items = ((sub['items'] as Obj)['data'] as Obj[]);
  const starts = items.map((item) => item['current_period_start'] as number);
  const ends = items.map((item) => item['current_period_end'] as number);
  sub['current_period_start'] = Math.min(...starts);
  sub['current_period_end'] = Math.max(...ends);
  for (const item of items) {
    delete item['current_period_start'];
    delete item['current_period_end'];
    item['billing_thresholds'] = null;
  }
  const discounts = sub['discounts'] as unknown[] | undefined;
  sub['discount'] = discounts && discounts.length > 0 ? discounts[0] : null;
  sub['billing_thresholds'] = null;
  if (previous && Array.isArray((previous['items'] as Obj | undefined)?.['data'])) {
    const [item] = (previous['items'] as { data: Obj[] }).data;
    if (item && 'current_period_start' in item) previous['current_period_start'] = item['current_period_start'];
    if (item && 'current_period_end' in item) previous['current_period_end'] = item['current_period_end'];
    delete previous['items'];
  }
}

/** Before 2025-03-31.basil an invoice named its subscription at the top. */
function invoiceBeforeBasil(invoice: Obj): void {
  const parent = invoice['parent'] as { subscription_details?: { subscription?: unknown; metadata?: unknown } | null } | null;
  const details = parent?.subscription_details ?? null;
  invoice['subscription'] = details?.subscription ?? null;
  invoice['subscription_details'] = details ? { metadata: details.metadata ?? {} } : null;
  delete invoice['parent'];
  invoice['paid'] = invoice['status'] === 'paid';
  invoice['paid_out_of_band'] = false;
  invoice['payment_intent'] = invoice['amount_due'] === 0 ? null : stripeId('pi');
  invoice['charge'] = invoice['status'] === 'paid' && invoice['amount_due'] !== 0 ? stripeId('ch') : null;
  invoice['discount'] = null;
  invoice['tax'] = null;
  invoice['total_tax_amounts'] = [];
  delete invoice['total_taxes'];
  delete invoice['amount_overpaid'];
  const lines = (invoice['lines'] as { data: Obj[] }).data;
  for (const line of lines) {
    const item = (line['parent'] as { subscription_item_details?: Obj | null } | null)?.subscription_item_details ?? null;
    const priceDetails = (line['pricing'] as { price_details?: Obj } | null)?.price_details ?? null;
    Object.assign(line, {
      type: item ? 'subscription' : 'invoiceitem',
      subscription: item?.['subscription'] ?? null,
      subscription_item: item?.['subscription_item'] ?? null,
      proration: item?.['proration'] ?? false,
      proration_details: item?.['proration_details'] ?? { credited_items: null },
      invoice_item: item?.['invoice_item'] ?? null,
      price: priceDetails ? { id: priceDetails['price'], object: 'price', product: priceDetails['product'] } : null,
      plan: priceDetails ? { id: priceDetails['price'], object: 'plan', product: priceDetails['product'] } : null,
      tax_amounts: [],
      tax_rates: [],
    });
    delete line['parent'];
    delete line['pricing'];
    delete line['taxes'];
    delete line['pretax_credit_amounts'];
  }
}
