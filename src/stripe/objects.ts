// The one place that reads Stripe objects. A webhook endpoint renders events in the API
// version it was created with, and live accounts still run endpoints on versions from
// before 2025-03-31.basil, so the same fact sits in different places:
//
//   fact                          2025-03-31.basil and later                  before
//   subscription's billing period items.data[].current_period_start/_end     current_period_start/_end on the subscription
//   invoice's subscription        parent.subscription_details.subscription    invoice.subscription
//   invoice's subscription meta   parent.subscription_details.metadata        subscription_details.metadata
//   item's price                  items.data[].price (plan kept beside it)    the same (plan before price existed)
//
// Everything this code reads is turned here into the one shape the rest of the code
// uses, and nothing past this module checks a version. A verified object that lacks a
// fact we need throws UnreadableObjectError naming it: that is not something a retry
// can fix, so the webhook acknowledges it and records it as failed for a replay.

export class UnreadableObjectError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreadableObjectError';
  }
}

type Obj = Record<string, unknown>;

/** A subscription item's price, as far as deciding "is this ours, which plan" needs. */
export interface PriceFacts {
  id: string;
  productId: string | null;
  lookupKey: string | null;
  /** The recurring interval (`recurring.interval` on a price, `interval` on a plan). */
  interval: string | null;
}

export interface SubscriptionItemFacts {
  /** si_…: what a quantity update names. */
  id: string | null;
  price: PriceFacts;
  quantity: number | null;
}

/** A subscription, whatever API version rendered it. Times are Unix seconds. */
export interface SubscriptionFacts {
  id: string;
  customerId: string;
  status: string;
  items: SubscriptionItemFacts[];
  /** Across all items: the earliest start and the latest end. */
  currentPeriodStart: number;
  currentPeriodEnd: number;
  cancelAtPeriodEnd: boolean;
  cancelAt: number | null;
  canceledAt: number | null;
  endedAt: number | null;
  trialStart: number | null;
  trialEnd: number | null;
  created: number;
  metadata: Readonly<Record<string, string>>;
}

export interface InvoiceFacts {
  id: string;
  customerId: string;
  /** null: an invoice that is not for a subscription (a one-off invoice). */
  subscriptionId: string | null;
  amountDue: number;
  amountPaid: number;
  currency: string;
  hostedInvoiceUrl: string | null;
  nextPaymentAttempt: number | null;
}

export interface CheckoutSessionFacts {
  id: string;
  mode: string;
  clientReferenceId: string | null;
  customerId: string | null;
  subscriptionId: string | null;
  /** Set when the session came from a Payment Link, never by our checkout. */
  paymentLinkId: string | null;
  email: string | null;
  metadata: Readonly<Record<string, string>>;
}

export function readSubscription(value: unknown): SubscriptionFacts {
  const sub = object(value, 'subscription');
  const id = text(sub, 'id', 'subscription');
  const where = `subscription ${id}`;
  const itemList = object(sub['items'], `${where}: items`);
  const rawItems = list(itemList['data'], `${where}: items.data`).map((item, i) => object(item, `${where}: items.data[${i}]`));

  // The period: on each item since 2025-03-31.basil, on the subscription before it.
  const starts: number[] = [];
  const ends: number[] = [];
  for (const item of rawItems) {
    const start = optionalNumber(item, 'current_period_start', where);
    const end = optionalNumber(item, 'current_period_end', where);
    if (start !== null && end !== null) {
      starts.push(start);
      ends.push(end);
    }
  }
  if (ends.length === 0) {
    const start = optionalNumber(sub, 'current_period_start', where);
    const end = optionalNumber(sub, 'current_period_end', where);
    if (start === null || end === null) {
      throw new UnreadableObjectError(`${where}: no billing period (neither items.data[].current_period_end nor current_period_end)`);
    }
    starts.push(start);
    ends.push(end);
  }

  return {
    id,
    customerId: idOf(sub['customer'], `${where}: customer`),
    status: text(sub, 'status', where),
    items: rawItems.map((item, i) => readItem(item, `${where}: items.data[${i}]`)),
    currentPeriodStart: Math.min(...starts),
    currentPeriodEnd: Math.max(...ends),
    cancelAtPeriodEnd: sub['cancel_at_period_end'] === true,
    cancelAt: optionalNumber(sub, 'cancel_at', where),
    canceledAt: optionalNumber(sub, 'canceled_at', where),
    endedAt: optionalNumber(sub, 'ended_at', where),
    trialStart: optionalNumber(sub, 'trial_start', where),
    trialEnd: optionalNumber(sub, 'trial_end', where),
    created: number(sub, 'created', where),
    metadata: metadataOf(sub['metadata']),
  };
}

function readItem(item: Obj, where: string): SubscriptionItemFacts {
  // `plan` is the older name of the same recurring price; both are sent side by side.
  const price = object(item['price'] ?? item['plan'], `${where}: price`);
  return {
    id: typeof item['id'] === 'string' && item['id'] !== '' ? item['id'] : null,
    price: {
      id: text(price, 'id', `${where}: price`),
      productId: optionalIdOf(price['product'], `${where}: price.product`),
      lookupKey: typeof price['lookup_key'] === 'string' ? price['lookup_key'] : null,
      interval: intervalOf(price),
    },
    quantity: optionalNumber(item, 'quantity', where),
  };
}

function intervalOf(price: Obj): string | null {
  const recurring = price['recurring'];
  if (isObject(recurring) && typeof recurring['interval'] === 'string') return recurring['interval'];
  return typeof price['interval'] === 'string' ? price['interval'] : null;
}

export function readInvoice(value: unknown): InvoiceFacts {
  const invoice = object(value, 'invoice');
  const id = text(invoice, 'id', 'invoice');
  const where = `invoice ${id}`;
  const currency = text(invoice, 'currency', where);
  return {
    id,
    customerId: idOf(invoice['customer'], `${where}: customer`),
    subscriptionId: invoiceSubscriptionId(invoice, where),
    amountDue: number(invoice, 'amount_due', where),
    amountPaid: number(invoice, 'amount_paid', where),
    currency,
    hostedInvoiceUrl: typeof invoice['hosted_invoice_url'] === 'string' ? invoice['hosted_invoice_url'] : null,
    nextPaymentAttempt: optionalNumber(invoice, 'next_payment_attempt', where),
  };
}

function invoiceSubscriptionId(invoice: Obj, where: string): string | null {
  const parent = invoice['parent'];
  if (isObject(parent) && isObject(parent['subscription_details'])) {
    const id = optionalIdOf(parent['subscription_details']['subscription'], `${where}: parent.subscription_details.subscription`);
    if (id) return id;
  }
  return optionalIdOf(invoice['subscription'], `${where}: subscription`);
}

export function readCheckoutSession(value: unknown): CheckoutSessionFacts {
  const session = object(value, 'checkout session');
  const id = text(session, 'id', 'checkout session');
  const where = `checkout session ${id}`;
  const details = session['customer_details'];
  const metadata = metadataOf(session['metadata']);
  const email =
    (isObject(details) && typeof details['email'] === 'string' ? details['email'] : null) ??
    (typeof session['customer_email'] === 'string' ? session['customer_email'] : null) ??
    metadata['email'] ??
    null;
  return {
    id,
    mode: text(session, 'mode', where),
    clientReferenceId: typeof session['client_reference_id'] === 'string' ? session['client_reference_id'] : null,
    customerId: optionalIdOf(session['customer'], `${where}: customer`),
    subscriptionId: optionalIdOf(session['subscription'], `${where}: subscription`),
    paymentLinkId: optionalIdOf(session['payment_link'], `${where}: payment_link`),
    email,
    metadata,
  };
}

/** The customer an event's object is about, if it names one: the object itself when it
 *  is a customer, else its `customer`. Never throws: this is for the record, not a rule. */
export function customerIdOf(value: unknown): string | null {
  if (!isObject(value)) return null;
  if (value['object'] === 'customer' && typeof value['id'] === 'string') return value['id'];
  const customer = value['customer'];
  if (typeof customer === 'string' && customer !== '') return customer;
  return isObject(customer) && typeof customer['id'] === 'string' ? customer['id'] : null;
}

/** A subscription schedule: what Stripe will change on the subscription, and when. The
 *  billing portal makes one for a downgrade at the period's end. */
export interface SubscriptionScheduleFacts {
  id: string;
  customerId: string;
  /** null: a schedule whose subscription does not exist yet (it starts in the future). */
  subscriptionId: string | null;
  status: string;
  /** The phase in force now, if the schedule has started. */
  currentPhase: { start: number; end: number } | null;
  phases: { start: number; end: number | null; priceIds: string[] }[];
}

export function readSubscriptionSchedule(value: unknown): SubscriptionScheduleFacts {
  const schedule = object(value, 'subscription schedule');
  const id = text(schedule, 'id', 'subscription schedule');
  const where = `subscription schedule ${id}`;
  const current = schedule['current_phase'];
  return {
    id,
    customerId: idOf(schedule['customer'], `${where}: customer`),
    // A released schedule lets go of its subscription and names it here instead.
    subscriptionId:
      optionalIdOf(schedule['subscription'], `${where}: subscription`) ??
      optionalIdOf(schedule['released_subscription'], `${where}: released_subscription`),
    status: text(schedule, 'status', where),
    currentPhase: isObject(current)
      ? { start: number(current, 'start_date', `${where}: current_phase`), end: number(current, 'end_date', `${where}: current_phase`) }
      : null,
    phases: list(schedule['phases'], `${where}: phases`).map((entry, i) => {
      const phase = object(entry, `${where}: phases[${i}]`);
      const at = `${where}: phases[${i}]`;
      return {
        start: number(phase, 'start_date', at),
        end: optionalNumber(phase, 'end_date', at),
        // `plan` is the older name of the same price, as on subscription items.
        priceIds: list(phase['items'], `${at}: items`).map((item, j) => {
          const entryItem = object(item, `${at}: items[${j}]`);
          return idOf(entryItem['price'] ?? entryItem['plan'], `${at}: items[${j}].price`);
        }),
      };
    }),
  };
}

/** A customer's active entitlements (entitlements.active_entitlement_summary): the
 *  lookup keys of the features Stripe says they have now. */
export interface EntitlementSummaryFacts {
  customerId: string;
  featureKeys: string[];
}

export function readEntitlementSummary(value: unknown): EntitlementSummaryFacts {
  const summary = object(value, 'entitlement summary');
  const customerId = text(summary, 'customer', 'entitlement summary');
  const where = `entitlement summary of ${customerId}`;
  const entitlements = object(summary['entitlements'], `${where}: entitlements`);
  const featureKeys = list(entitlements['data'], `${where}: entitlements.data`).map((entry, i) =>
    text(object(entry, `${where}: entitlements.data[${i}]`), 'lookup_key', `${where}: entitlements.data[${i}]`),
  );
  return { customerId, featureKeys };
}

/** A deleted customer's id (the event carries the customer as it was). */
export function readCustomerId(value: unknown): string {
  return text(object(value, 'customer'), 'id', 'customer');
}

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function object(value: unknown, where: string): Obj {
  if (!isObject(value)) throw new UnreadableObjectError(`${where} is not an object`);
  return value;
}

function list(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw new UnreadableObjectError(`${where} is not a list`);
  return value;
}

function text(obj: Obj, key: string, where: string): string {
  const value = obj[key];
  if (typeof value !== 'string' || value === '') throw new UnreadableObjectError(`${where}: ${key} is missing`);
  return value;
}

function number(obj: Obj, key: string, where: string): number {
  const value = obj[key];
  if (!isTime(value)) throw new UnreadableObjectError(`${where}: ${key} is missing or not a number`);
  return value;
}

/** Absent and null are the same "not set"; anything else must be a finite number. */
function optionalNumber(obj: Obj, key: string, where: string): number | null {
  const value = obj[key];
  if (value === undefined || value === null) return null;
  if (!isTime(value)) throw new UnreadableObjectError(`${where}: ${key} is not a number`);
  return value;
}

// Finite and within what Date can represent (±8.64e12 s): a Unix time that turns
// into an ISO string without a RangeError, and any amount Stripe sends.
function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && Math.abs(value) <= 8.64e12;
}

/** Stripe fields that hold either an id or the expanded object. */
function optionalIdOf(value: unknown, where: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' && value !== '') return value;
  if (isObject(value) && typeof value['id'] === 'string' && value['id'] !== '') return value['id'];
  throw new UnreadableObjectError(`${where} is neither an id nor an object with one`);
}

function idOf(value: unknown, where: string): string {
  const id = optionalIdOf(value, where);
  if (id === null) throw new UnreadableObjectError(`${where} is missing`);
  return id;
}

function metadataOf(value: unknown): Readonly<Record<string, string>> {
  if (!isObject(value)) return {};
  const out: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) if (typeof entry === 'string') out[key] = entry;
  return out;
}
