// Stripe's hosted pages, played locally: a Checkout page and a billing-portal page for
// the sessions our functions create through the stripe-mock bridge. stripe-mock answers
// them with fixture URLs on checkout.stripe.com and *.stripe.me, which open nothing
// offline; for an app registered here (by the origin its return URLs go to), the
// bridge rewrites each session's `url` to these pages and remembers what the session
// was created with. Submitting a page sends, signed with the app's webhook secret, the
// events Stripe would send for that outcome (scripts/lib/stripe-flows.ts, continuing
// the user's story as the app's database tells it), then returns to the session's URL.
//
// Part of the local stack only (npm run dev, the tests): never in netlify/, src/ or
// public/, so no deploy contains it.

import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import pg from 'pg';
import Stripe from 'stripe';
import { allPrices, parseCatalog } from '../../src/catalog/catalog.ts';
import { LOCAL_STRIPE_SECRET_KEY } from '../lib/local-defaults.ts';
import { invoiceWithUsage, itemId, type UsageLine } from '../lib/stripe-events.ts';
import type { BridgeMeters, MeteredUsage } from './bridge-meters.ts';
import { FlowError, planFlow, readStoredBilling, type Flow, type FlowOptions, type FlowPrice, type Interval, type StoredBilling } from '../lib/stripe-flows.ts';

type Obj = Record<string, unknown>;

/** An app whose Stripe sessions these pages serve: where its events go and where its state is. */
export interface LocalApp {
  /** The origin of its success, cancel and return URLs, e.g. http://localhost:8888. */
  origin: string;
  webhookUrl: string;
  webhookSecret: string;
  /** A superuser connection to its database, to read the user's billing state. */
  databaseUrl: string;
  /** Its plan catalog (BILLING_CATALOG): the portal offers switches between its prices, as
   *  the portal configuration billing:setup makes does. None: no plan switches. */
  catalogFile?: string;
}

/** Whose story a flow continues: the buyer, and the team they buy for (its billing). */
interface Buyer {
  userId: string;
  teamId: string | null;
}

interface CheckoutSessionRecord {
  id: string;
  app: LocalApp;
  customer: string;
  priceId: string;
  /** The line item's quantity (seats). */
  quantity: number;
  successUrl: string;
  cancelUrl: string;
  buyer: Buyer;
  email: string | null;
  trialDays: number | null;
  /** payment_method_collection=if_required: no card asked while nothing is due. */
  cardOptional: boolean;
  allowPromotionCodes: boolean;
  complete: boolean;
  /** A 3-D Secure challenge waiting for the customer's answer, with the flow that follows success. */
  challenge: 'payment' | 'setup' | null;
}

interface PortalSessionRecord {
  id: string;
  app: LocalApp;
  customer: string;
  returnUrl: string;
  /** The portal configuration it was made with (`configuration`), else the default. */
  configurationId: string | null;
}

/** What a portal configuration lets a customer do with a subscription's quantity. */
interface QuantityRule {
  /** features.subscription_update: enabled, with "quantity" in default_allowed_updates. */
  allowed: boolean;
  prorationBehavior: string | null;
  /** Per product, its adjustable_quantity where the configuration gives one. */
  products: Map<string, { enabled: boolean; minimum: number | null; maximum: number | null }>;
}

/** The customer's saved card, as the pages know it: `fails` attaches but every charge is declined. */
type Card = 'ok' | 'fails' | 'none';

/** Stripe's documented test cards that the pages take. */
const TEST_CARDS: Record<string, 'succeeds' | 'declined' | 'authentication'> = {
  '4242424242424242': 'succeeds',
  '4000000000000341': 'declined',
  '4000002760003184': 'authentication',
};

export interface HostedPagesDeps {
  /** Where the bridge listens: the pages' own origin. */
  baseUrl: string;
  /** The bridge's memory of prices and products (what billing:setup created). */
  prices: ReadonlyMap<string, Obj>;
  products: ReadonlyMap<string, Obj>;
  /** GET paths the bridge answers from memory: a completed session goes here for POST /api/stripe/sync. */
  objects: Map<string, unknown>;
  /** The bridge's meters: the usage a renewal's invoice and the portal show. */
  meters: Pick<BridgeMeters, 'usage'>;
}

export interface HostedPages {
  register(app: LocalApp): void;
  /** The answer to a create: a session's gets a local `url` if it is a registered app's;
   *  a portal configuration's rules are kept for the portal page. */
  remember(path: string, params: URLSearchParams, answer: Obj): Obj;
  /** Serves a page request; false if the path is not one of the pages. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL, body: string): boolean;
  close(): Promise<void>;
}

export const CHECKOUT_PAGE = '/checkout/';
export const PORTAL_PAGE = '/billing/';

export function createHostedPages(deps: HostedPagesDeps): HostedPages {
  const apps = new Map<string, LocalApp>();
  const checkouts = new Map<string, CheckoutSessionRecord>();
  const portals = new Map<string, PortalSessionRecord>();
  const cards = new Map<string, Card>();
  /** Downgrades and shorter intervals wait for the period's end (the portal configuration
   *  billing:setup makes), in a subscription schedule: per customer, its id and new price. */
  const scheduled = new Map<string, { scheduleId: string; priceId: string }>();
  /** Per customer, who bought at Checkout: the portal continues their story. */
  const buyers = new Map<string, Buyer>();
  /** Per customer, the metered prices its Checkout Session subscribed it to (line items after the plan's). */
  const meteredPrices = new Map<string, string[]>();
  /** Portal configurations by id; the last one written is the default (billing:setup's). */
  const configurations = new Map<string, QuantityRule>();
  let defaultConfiguration: string | null = null;
  const pools = new Map<string, pg.Pool>();
  const pool = (app: LocalApp) => {
    let found = pools.get(app.databaseUrl);
    if (!found) pools.set(app.databaseUrl, (found = new pg.Pool({ connectionString: app.databaseUrl, max: 2 })));
    return found;
  };
  const appFor = (url: string | null) => {
    try {
      return url ? apps.get(new URL(url).origin) : undefined;
    } catch {
      return undefined;
    }
  };

  // Stripe -------------------------------------------------------------------------------

  const priceOf = (priceId: string | null): (FlowPrice & { name: string; lookupKey: string | null }) | null => {
    const price = priceId ? deps.prices.get(priceId) : undefined;
    if (!price || !priceId) return null;
    const productId = String(price['product']);
    const product = deps.products.get(productId);
    const interval: Interval = (price['recurring'] as Obj | null)?.['interval'] === 'year' ? 'year' : 'month';
    return {
      id: priceId,
      amount: Number(price['unit_amount']),
      currency: String(price['currency']),
      interval,
      productId,
      name: typeof product?.['name'] === 'string' ? product['name'] : productId,
      lookupKey: typeof price['lookup_key'] === 'string' ? price['lookup_key'] : null,
    };
  };

  /** The customer's buyer: the one who checked out, else its subject in the database (a
   *  user, or a team whose buyer was forgotten by a restart). */
  const buyerOf = async (app: LocalApp, customerId: string): Promise<Buyer | null> => {
    const known = buyers.get(customerId);
    if (known) return known;
    const { rows } = await pool(app).query<{ user_id: string }>('select user_id from public.billing_customers where stripe_customer_id = $1', [customerId]);
    return rows[0] ? { userId: rows[0].user_id, teamId: null } : null;
  };
  const stateOf = (app: LocalApp, buyer: Buyer) => readStoredBilling(pool(app), buyer.teamId ?? buyer.userId);

  /** Plans a flow from the stored state and delivers its events in order, as Stripe would.
   *  `billUsage`: the usage lines of the invoice it pays, read as each invoice event is sent. */
  const play = async (
    app: LocalApp,
    flow: Flow,
    buyer: Buyer,
    options: Partial<FlowOptions> & { priceId: string },
    billUsage?: () => UsageLine[],
  ): Promise<Stripe.Event[]> => {
    const stored = await stateOf(app, buyer);
    const current = priceOf(stored.subscription?.priceId ?? options.priceId);
    const planned = planFlow(flow, stored, {
      appUrl: app.origin,
      ...(current && { amount: current.amount, currency: current.currency, interval: current.interval, ...(current.productId && { productId: current.productId }) }),
      ...options,
      userId: buyer.userId,
      ...(buyer.teamId && { teamId: buyer.teamId }),
    });
    const delivered: Stripe.Event[] = [];
    const deliver = async (event: Stripe.Event) => {
      const payload = JSON.stringify(event, null, 2);
      const response = await fetch(app.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret: app.webhookSecret }) },
        body: payload,
      });
      if (!response.ok) throw new Error(`the webhook answered ${event.type} ${event.id} with ${response.status}: ${await response.text()}`);
      delivered.push(event);
    };
    for (const event of planned.events) {
      if (billUsage && event.type === 'invoice.paid') {
        // The renewal's invoice is created as a draft (its usage as reported so far), and paid
        // with the usage Stripe holds once the app had its invoice.created (a last flush).
        const draft = invoiceWithUsage(event, billUsage(), { draft: true });
        draft.created = event.created - 1;
        await deliver(draft);
        await deliver(invoiceWithUsage(event, billUsage()));
      } else {
        await deliver(event);
      }
    }
    return delivered;
  };

  /** The customer's metered usage over [start, end), per metered price it subscribed to. */
  const usageOf = (customer: string, start: number, end: number): MeteredUsage[] =>
    (meteredPrices.get(customer) ?? []).flatMap((priceId) => {
      const price = deps.prices.get(priceId);
      const usage = price ? deps.meters.usage(price, customer, start, end) : null;
      return usage ? [usage] : [];
    });
  const usageLines = (customer: string, start: number, end: number): UsageLine[] =>
    usageOf(customer, start, end).map((usage) => ({
      priceId: usage.priceId,
      productId: typeof deps.prices.get(usage.priceId)?.['product'] === 'string' ? String(deps.prices.get(usage.priceId)?.['product']) : null,
      quantity: usage.quantity,
      unitAmountDecimal: String(usage.unitAmount),
      amount: usage.amount,
      description: `${usage.meterName}: ${usageText(usage)}`,
      periodStart: start,
      periodEnd: end,
    }));

  // Checkout -----------------------------------------------------------------------------

  const completeCheckout = (session: CheckoutSessionRecord, events: Stripe.Event[]) => {
    const completed = events.find((e) => e.type === 'checkout.session.completed')?.data.object as unknown as Obj | undefined;
    const subscription = [...events].reverse().find((e) => e.type.startsWith('customer.subscription.'))?.data.object;
    if (!completed) return;
    session.complete = true;
    // What GET /v1/checkout/sessions/{id}?expand[]=subscription answers from now on.
    deps.objects.set(`/v1/checkout/sessions/${session.id}`, { ...completed, subscription: subscription ?? completed['subscription'] });
  };

  const checkoutPage = (session: CheckoutSessionRecord, message: { error?: string } = {}): string => {
    const price = priceOf(session.priceId);
    const amount = price ? money(price.amount * session.quantity, price.currency) : 'the price';
    const per = price?.interval === 'year' ? 'year' : 'month';
    const action = `${CHECKOUT_PAGE}${session.id}`;
    const trial = session.trialDays !== null;
    if (session.challenge) {
      return layout('Authenticate your payment (local Checkout)', `
        <h1 id="challenge-heading">Authenticate this ${session.challenge === 'setup' ? 'card' : 'payment'}</h1>
        <p>Your bank asks you to confirm ${session.challenge === 'setup' ? 'that this card is yours' : `the payment of ${esc(amount)}`} (3-D Secure, test mode).</p>
        <form method="post" action="${action}" class="row">
          <button type="submit" name="authentication" value="complete" class="primary">Authenticate</button>
          <button type="submit" name="authentication" value="fail">Fail authentication</button>
        </form>`);
    }
    return layout(`Subscribe to ${price?.name ?? 'the plan'} (local Checkout)`, `
      <p><a href="${action}/cancel">← Back to Analytics Pro</a></p>
      <h1>Subscribe to ${esc(price?.name ?? session.priceId)}</h1>
      <p class="price" id="price">${trial ? `${session.trialDays} days free, then ` : ''}<strong>${esc(amount)}</strong> per ${per}</p>
      <p id="quantity">Quantity: ${session.quantity}${price ? ` (${esc(money(price.amount, price.currency))} each)` : ''}</p>
      ${trial ? `<p id="trial">Free trial: ${session.trialDays} days. ${session.cardOptional ? 'No card needed today.' : 'Your card is charged when the trial ends.'}</p>` : ''}
      <p class="muted">Billed ${price?.interval === 'year' ? 'yearly' : 'monthly'}${session.email ? ` to ${esc(session.email)}` : ''}.</p>
      ${message.error ? `<p class="error" role="alert">${esc(message.error)}</p>` : ''}
      <form method="post" action="${action}" novalidate>
        <label for="card">Card number${session.cardOptional ? ' (optional)' : ''}</label>
        <input id="card" name="card" inputmode="numeric" autocomplete="cc-number" placeholder="1234 1234 1234 1234" aria-describedby="card-hint">
        <p id="card-hint" class="hint">Stripe's test cards: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0341 is declined; 4000 0027 6000 3184 asks for authentication. Any expiry and CVC.</p>
        ${session.allowPromotionCodes ? '<label for="promotion-code">Promotion code</label><input id="promotion-code" name="promotion_code" autocomplete="off">' : ''}
        <p><button type="submit" class="primary">${trial ? 'Start trial' : 'Subscribe'}</button></p>
      </form>
      <p class="muted">This page stands in for Stripe Checkout in the local stack (no Stripe account, no network).</p>`);
  };

  const payCheckout = async (session: CheckoutSessionRecord, form: URLSearchParams): Promise<{ redirect: string } | { page: string }> => {
    const again = (error: string) => ({ page: checkoutPage(session, { error }) });
    const buyer = session.buyer;
    const options = {
      priceId: session.priceId,
      quantity: session.quantity,
      checkout: { sessionId: session.id, successUrl: session.successUrl, cancelUrl: session.cancelUrl },
      ...(session.trialDays !== null && { trialDays: session.trialDays }),
    };
    const done = (events: Stripe.Event[]) => {
      completeCheckout(session, events);
      return { redirect: session.successUrl.replace('{CHECKOUT_SESSION_ID}', session.id) };
    };
    const incomplete = async () => (await stateOf(session.app, buyer)).subscription?.status === 'incomplete';
    const trial = session.trialDays !== null;

    const answer = form.get('authentication');
    if (session.challenge && answer) {
      const challenge = session.challenge;
      session.challenge = null;
      if (answer === 'complete') {
        cards.set(session.customer, 'ok');
        return done(await play(session.app, challenge === 'setup' ? 'trial' : 'first-payment-paid', buyer, options));
      }
      if (challenge === 'payment') await play(session.app, 'first-payment-declined', buyer, options);
      return again('We are unable to authenticate your payment method. Please choose a different payment method and try again.');
    }

    if ((form.get('promotion_code') ?? '').trim() !== '') return again('This code is invalid.');
    const number = (form.get('card') ?? '').replace(/[\s-]/g, '');
    if (number === '' && trial && session.cardOptional) {
      cards.set(session.customer, 'none');
      return done(await play(session.app, 'trial', buyer, options));
    }
    const outcome = TEST_CARDS[number];
    if (!outcome) return again('Your card number is invalid. Use one of Stripe\'s test cards below.');
    if (trial) {
      // Nothing is charged today: a card that fails to pay still attaches.
      if (outcome === 'authentication') {
        session.challenge = 'setup';
        return { page: checkoutPage(session) };
      }
      cards.set(session.customer, outcome === 'declined' ? 'fails' : 'ok');
      return done(await play(session.app, 'trial', buyer, options));
    }
    switch (outcome) {
      case 'succeeds':
        cards.set(session.customer, 'ok');
        return done(await play(session.app, (await incomplete()) ? 'first-payment-paid' : 'subscribe', buyer, options));
      case 'declined':
        await play(session.app, 'first-payment-declined', buyer, options);
        return again('Your card was declined.');
      case 'authentication':
        await play(session.app, 'first-payment-requires-action', buyer, options);
        session.challenge = 'payment';
        return { page: checkoutPage(session) };
    }
  };

  // The billing portal -----------------------------------------------------------------

  /** The seats a portal session may set for a subscription of this price, or null when its
   *  configuration allows no quantity change (as Stripe's portal then shows none). */
  const seatsRule = (portal: PortalSessionRecord, price: { productId?: string } | null): { minimum: number; maximum: number | null; prorationBehavior: string | null } | null => {
    const id = portal.configurationId ?? defaultConfiguration;
    const rule = id ? configurations.get(id) : undefined;
    if (!rule?.allowed || !price) return null;
    const product = price.productId ? rule.products.get(price.productId) : undefined;
    if (product && !product.enabled) return null;
    // A seat-based subscription keeps at least one seat: 0 would bill nothing while it runs.
    return { minimum: Math.max(product?.minimum ?? 1, 1), maximum: product?.maximum ?? null, prorationBehavior: rule.prorationBehavior };
  };

  const portalPage = async (portal: PortalSessionRecord, notice: string | null): Promise<string> => {
    const buyer = await buyerOf(portal.app, portal.customer);
    const stored: StoredBilling | null = buyer ? await stateOf(portal.app, buyer) : null;
    const sub = stored?.subscription ?? null;
    const live = sub !== null && !['canceled', 'incomplete_expired'].includes(sub.status);
    const price = priceOf(sub?.priceId ?? null);
    const card = cards.get(portal.customer) ?? 'ok';
    const pending = priceOf(scheduled.get(portal.customer)?.priceId ?? null);
    const action = `${PORTAL_PAGE}${portal.id}`;
    const button = (name: string, label: string, extra = '') =>
      `<form method="post" action="${action}"><input type="hidden" name="action" value="${name}">${extra}<button type="submit">${esc(label)}</button></form>`;

    const sold = lookupKeysOf(portal.app);
    const others = [...deps.prices.keys()]
      .map((id) => priceOf(id))
      .filter((p): p is NonNullable<typeof p> => p !== null && p.lookupKey !== null && sold.has(p.lookupKey) && p.id !== price?.id && deps.prices.get(p.id)?.['active'] !== false && !isMetered(deps.prices.get(p.id)))
      .sort((a, b) => a.name.localeCompare(b.name) || a.interval.localeCompare(b.interval));
    const switches = live && sub && ['active', 'trialing'].includes(sub.status) && price
      ? `<h2>Change plan</h2><ul class="plans">${others
          .map((p) => `<li>${button('switch', `Switch to ${p.name}, ${money(p.amount, p.currency)} per ${p.interval}`, `<input type="hidden" name="price" value="${esc(p.id)}">`)}
            <span class="muted">${atPeriodEnd(price, p) ? 'at the end of this period' : 'now, prorated'}</span></li>`)
          .join('')}</ul>`
      : '';
    const quantity = sub?.quantity ?? 1;
    const seats = live && sub && ['active', 'trialing'].includes(sub.status) ? seatsRule(portal, price) : null;
    const seatsForm =
      seats && price
        ? `<h2>Seats</h2>
           <form method="post" action="${action}" class="row">
             <input type="hidden" name="action" value="quantity">
             <label for="quantity" class="inline">Seats</label>
             <input id="quantity" name="quantity" type="number" inputmode="numeric" required min="${seats.minimum}"${seats.maximum === null ? '' : ` max="${seats.maximum}"`} value="${quantity}" aria-describedby="quantity-hint">
             <button type="submit">Update seats</button>
           </form>
           <p id="quantity-hint" class="hint">${esc(money(price.amount, price.currency))} per seat per ${price.interval}${seats.prorationBehavior === 'none' ? '' : ', prorated for the rest of this period'}.</p>`
        : '';
    const periodEnd = sub?.periodEnd ? day(sub.periodEnd) : 'unknown';
    const usage = live && sub?.periodStart && sub.periodEnd ? usageOf(portal.customer, sub.periodStart, sub.periodEnd) : [];
    const usageSection =
      usage.length > 0
        ? `<h2>Usage this period</h2><ul id="metered-usage">${usage
            .map((u) => `<li><strong>${esc(u.meterName)}</strong>: ${esc(usageText(u))} since ${esc(day(sub?.periodStart ?? 0))}, ${esc(money(u.amount, u.currency))} so far (billed on ${esc(periodEnd)})</li>`)
            .join('')}</ul>`
        : '';
    return layout('Billing (local portal)', `
      <p><a href="${esc(portal.returnUrl)}">← Return to Analytics Pro</a></p>
      <h1>Billing</h1>
      ${notice ? `<p class="notice" role="status" id="notice">${esc(notice)}</p>` : ''}
      <h2>Current plan</h2>
      <div id="current-plan">${
        sub && price
          ? `<p><strong>${esc(price.name)}</strong>: ${esc(money(price.amount, price.currency))} per ${price.interval} (${esc(sub.status)})</p>
             ${quantity !== 1 || seats ? `<p id="current-quantity">Quantity: ${quantity}</p>` : ''}
             <p>${sub.cancelAtPeriodEnd ? `Cancels on ${periodEnd}.` : sub.status === 'canceled' ? 'Canceled.' : `${sub.status === 'trialing' ? 'Trial ends' : 'Renews'} on ${periodEnd}.`}</p>
             ${pending ? `<p id="scheduled">Switches to ${esc(pending.name)}, ${esc(money(pending.amount, pending.currency))} per ${pending.interval}, on ${periodEnd}.</p>` : ''}`
          : '<p>No subscription.</p>'
      }</div>
      ${usageSection}
      ${switches}
      ${seatsForm}
      ${live ? `<h2>Subscription</h2>${sub?.cancelAtPeriodEnd ? button('uncancel', 'Renew subscription') : button('cancel', 'Cancel subscription')}` : ''}
      <h2>Payment method</h2>
      <p id="card-on-file">${card === 'none' ? 'No card on file.' : card === 'fails' ? 'Visa •••• 0341 (its charges are declined)' : 'Visa •••• 4242'}</p>
      ${button('card', card === 'fails' ? 'Use a working card (4242)' : 'Replace with a failing card (0341)')}
      ${live ? `<h2>Test clock</h2><p class="muted">Plays what Stripe does when this period ends: the renewal, its failure, the trial's end or the cancellation.</p>${button('advance', 'Advance to the next renewal')}` : ''}
      <p class="muted">This page stands in for the Stripe billing portal in the local stack.</p>`);
  };

  const portalAction = async (portal: PortalSessionRecord, form: URLSearchParams): Promise<string> => {
    const userId = await buyerOf(portal.app, portal.customer);
    if (!userId) throw new FlowError(`no user has customer ${portal.customer} in the local database`);
    const stored = await stateOf(portal.app, userId);
    const sub = stored.subscription;
    const current = priceOf(sub?.priceId ?? null);
    const base = { priceId: sub?.priceId ?? '' };
    const card = cards.get(portal.customer) ?? 'ok';
    const pending = scheduled.get(portal.customer);
    const pendingPrice = priceOf(pending?.priceId ?? null);
    // A new choice replaces the change already scheduled: that schedule is released.
    const releasePending = async () => {
      if (pending && pendingPrice) await play(portal.app, 'release-schedule', userId, { ...base, newPrice: pendingPrice, scheduleId: pending.scheduleId });
      scheduled.delete(portal.customer);
    };
    switch (form.get('action')) {
      case 'switch': {
        const to = priceOf(form.get('price'));
        if (!to || !current) throw new FlowError('That price is not in the local Stripe.');
        await releasePending();
        if (atPeriodEnd(current, to)) {
          const events = await play(portal.app, 'schedule-price-change', userId, { ...base, newPrice: to });
          const scheduleId = (events[0]?.data.object as { id?: string } | undefined)?.id ?? '';
          scheduled.set(portal.customer, { scheduleId, priceId: to.id });
          return `${to.name} (${to.interval}ly) starts when this period ends.`;
        }
        await play(portal.app, 'switch-price', userId, { ...base, newPrice: to });
        return `Switched to ${to.name}, ${money(to.amount, to.currency)} per ${to.interval}.`;
      }
      case 'quantity': {
        const seats = sub && ['active', 'trialing'].includes(sub.status) ? seatsRule(portal, current) : null;
        if (!sub || !seats) throw new FlowError('This portal does not change the quantity of this subscription.');
        const quantity = Number(form.get('quantity'));
        if (!Number.isInteger(quantity) || quantity < seats.minimum || (seats.maximum !== null && quantity > seats.maximum)) {
          throw new FlowError(`Choose from ${seats.minimum} to ${seats.maximum ?? 'any number of'} seats.`);
        }
        // What Stripe's portal does: an update of the subscription's item, through the API
        // (this bridge), which answers it with the events Stripe sends.
        await updateQuantity(sub.id, quantity, seats.prorationBehavior);
        return `Seats changed to ${quantity}.`;
      }
      case 'cancel':
        await play(portal.app, 'cancel-at-period-end', userId, base);
        return 'Your subscription cancels at the end of the period.';
      case 'uncancel':
        await play(portal.app, 'uncancel', userId, base);
        return 'Your subscription renews again.';
      case 'card':
        // Stripe sends payment_method.attached and customer.updated here; this backend
        // handles neither, so the change shows at the next charge.
        cards.set(portal.customer, card === 'fails' ? 'ok' : 'fails');
        return card === 'fails' ? 'Card replaced: Visa •••• 4242.' : 'Card replaced: Visa •••• 0341. The next charge will be declined.';
      case 'advance': {
        if (!sub) throw new FlowError('No subscription to renew.');
        if (sub.cancelAtPeriodEnd || (sub.status === 'trialing' && card === 'none')) {
          await play(portal.app, 'cancel', userId, base);
          return 'The period ended: the subscription is canceled.';
        }
        if (sub.status === 'past_due' || sub.status === 'unpaid') {
          await play(portal.app, card === 'fails' ? 'payment-failed' : 'recover', userId, base);
          return card === 'fails' ? 'The retry was declined.' : 'The retry succeeded: the invoice is paid.';
        }
        if (card === 'fails') {
          await play(portal.app, 'payment-failed', userId, base);
          return 'The renewal payment was declined.';
        }
        scheduled.delete(portal.customer);
        // Metered usage is billed in arrears: the period that closes, on the renewal's invoice.
        const closing = sub.periodStart !== null && sub.periodEnd !== null && meteredPrices.has(portal.customer) ? { start: sub.periodStart, end: sub.periodEnd } : null;
        await play(
          portal.app,
          'renew',
          userId,
          { ...base, ...(pending && pendingPrice && { newPrice: pendingPrice, scheduleId: pending.scheduleId }) },
          closing ? () => usageLines(portal.customer, closing.start, closing.end) : undefined,
        );
        const next = pendingPrice;
        return next ? `Renewed on ${next.name}, ${next.interval}ly.` : 'Renewed: the next period is paid.';
      }
      default:
        throw new FlowError('Unknown action.');
    }
  };

  const updateQuantity = async (subscriptionId: string, quantity: number, prorationBehavior: string | null) => {
    const body = new URLSearchParams({ 'items[0][id]': itemId(subscriptionId), 'items[0][quantity]': String(quantity) });
    if (prorationBehavior) body.set('proration_behavior', prorationBehavior);
    const response = await fetch(`${deps.baseUrl}/v1/subscriptions/${encodeURIComponent(subscriptionId)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${LOCAL_STRIPE_SECRET_KEY}`, 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
    if (!response.ok) {
      const answer = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
      throw new FlowError(answer.error?.message ?? `Stripe answered the update with ${response.status}.`);
    }
  };

  // HTTP ---------------------------------------------------------------------------------

  const send = (res: ServerResponse, status: number, html: string) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html);
  };
  const redirect = (res: ServerResponse, location: string) => {
    res.writeHead(303, { location, 'cache-control': 'no-store' });
    res.end();
  };
  const fail = (res: ServerResponse, error: unknown, back: string) => {
    const known = error instanceof FlowError;
    const message = esc(error instanceof Error ? error.message : String(error));
    send(res, known ? 409 : 500, layout('Error (local Stripe)', `<h1>That did not work</h1><p class="error" role="alert">${message}</p><p><a href="${esc(back)}">← Back</a></p>`));
  };

  return {
    register(app) {
      apps.set(new URL(app.origin).origin, app);
    },

    remember(path, params, answer) {
      const id = String(answer['id']);
      const configuration = /^\/v1\/billing_portal\/configurations(?:\/([^/]+))?$/.exec(path);
      if (configuration) {
        const configurationId = configuration[1] ?? id;
        const rule = quantityRuleOf(params);
        if (rule) configurations.set(configurationId, rule);
        defaultConfiguration = configurationId;
        return answer;
      }
      if (path === '/v1/checkout/sessions') {
        const app = appFor(params.get('success_url'));
        if (!app) return answer;
        const trialDays = params.get('subscription_data[trial_period_days]');
        const quantity = Number(params.get('line_items[0][quantity]') ?? 1);
        const customer = params.get('customer') ?? '';
        const buyer = { userId: params.get('client_reference_id') ?? params.get('metadata[userId]') ?? '', teamId: params.get('metadata[teamId]') };
        if (customer) buyers.set(customer, buyer);
        const metered = [...params]
          .filter(([key, priceId]) => /^line_items\[\d+\]\[price\]$/.test(key) && isMetered(deps.prices.get(priceId)))
          .map(([, priceId]) => priceId);
        if (customer && metered.length > 0) meteredPrices.set(customer, metered);
        checkouts.set(id, {
          id,
          app,
          customer,
          priceId: params.get('line_items[0][price]') ?? '',
          quantity: Number.isInteger(quantity) && quantity > 0 ? quantity : 1,
          successUrl: params.get('success_url') ?? app.origin,
          cancelUrl: params.get('cancel_url') ?? app.origin,
          buyer,
          email: params.get('metadata[email]'),
          trialDays: trialDays === null ? null : Number(trialDays),
          cardOptional: params.get('payment_method_collection') === 'if_required',
          allowPromotionCodes: params.get('allow_promotion_codes') === 'true',
          complete: false,
          challenge: null,
        });
        return { ...answer, customer: params.get('customer'), url: `${deps.baseUrl}${CHECKOUT_PAGE}${id}` };
      }
      if (path === '/v1/billing_portal/sessions') {
        const app = appFor(params.get('return_url'));
        if (!app) return answer;
        portals.set(id, { id, app, customer: params.get('customer') ?? '', returnUrl: params.get('return_url') ?? app.origin, configurationId: params.get('configuration') });
        return { ...answer, customer: params.get('customer'), return_url: params.get('return_url'), url: `${deps.baseUrl}${PORTAL_PAGE}${id}` };
      }
      return answer;
    },

    handle(req, res, url, body) {
      const checkoutMatch = /^\/checkout\/([^/]+)(\/cancel)?$/.exec(url.pathname);
      const portalMatch = /^\/billing\/([^/]+)$/.exec(url.pathname);
      if (!checkoutMatch && !portalMatch) return false;
      const form = new URLSearchParams(body);
      void (async () => {
        try {
          if (checkoutMatch) {
            const session = checkouts.get(checkoutMatch[1] ?? '');
            if (!session) return send(res, 404, layout('Not found (local Checkout)', '<h1>This Checkout Session does not exist</h1>'));
            if (checkoutMatch[2]) return redirect(res, session.cancelUrl);
            if (session.complete) return redirect(res, session.successUrl.replace('{CHECKOUT_SESSION_ID}', session.id));
            if (req.method !== 'POST') return send(res, 200, checkoutPage(session));
            const result = await payCheckout(session, form);
            return 'redirect' in result ? redirect(res, result.redirect) : send(res, 200, result.page);
          }
          const portal = portals.get(portalMatch?.[1] ?? '');
          if (!portal) return send(res, 404, layout('Not found (local portal)', '<h1>This portal session does not exist</h1>'));
          if (req.method !== 'POST') return send(res, 200, await portalPage(portal, url.searchParams.get('notice')));
          const notice = await portalAction(portal, form);
          return redirect(res, `${PORTAL_PAGE}${portal.id}?notice=${encodeURIComponent(notice)}`);
        } catch (error) {
          fail(res, error, url.pathname);
        }
      })();
      return true;
    },

    async close() {
      await Promise.all([...pools.values()].map((p) => p.end()));
    },
  };
}

/** A portal configuration's rule for quantities, from its create or update parameters;
 *  null when they do not touch subscription updates (an update of its metadata only). */
function quantityRuleOf(params: URLSearchParams): QuantityRule | null {
  const prefix = 'features[subscription_update]';
  if (![...params.keys()].some((key) => key.startsWith(prefix))) return null;
  const updates = [...params].filter(([key]) => key.startsWith(`${prefix}[default_allowed_updates]`)).map(([, value]) => value);
  const products = new Map<string, { enabled: boolean; minimum: number | null; maximum: number | null }>();
  for (const [key, product] of params) {
    const match = /^features\[subscription_update\]\[products\]\[(\d+)\]\[product\]$/.exec(key);
    if (!match) continue;
    const at = (field: string) => params.get(`${prefix}[products][${match[1]}][adjustable_quantity][${field}]`);
    const enabled = at('enabled');
    // A product without adjustable_quantity follows default_allowed_updates.
    if (enabled === null) continue;
    products.set(product, { enabled: enabled === 'true', minimum: at('minimum') === null ? null : Number(at('minimum')), maximum: at('maximum') === null ? null : Number(at('maximum')) });
  }
  return {
    allowed: params.get(`${prefix}[enabled]`) === 'true' && updates.includes('quantity'),
    prorationBehavior: params.get(`${prefix}[proration_behavior]`),
    products,
  };
}

function isMetered(price: Obj | undefined): boolean {
  return (price?.['recurring'] as Obj | null | undefined)?.['usage_type'] === 'metered';
}

/** "12,345 units at €1.00 per 10,000 (2 × €1.00)", as the portal and the invoice line say it. */
function usageText(u: MeteredUsage): string {
  const unit = money(u.unitAmount, u.currency);
  const count = new Intl.NumberFormat('en').format(u.usage);
  return u.divideBy
    ? `${count} units at ${unit} per ${new Intl.NumberFormat('en').format(u.divideBy)} (${u.quantity} × ${unit})`
    : `${count} units at ${unit} each`;
}

function lookupKeysOf(app: LocalApp): Set<string> {
  if (!app.catalogFile) return new Set();
  const catalog = parseCatalog(JSON.parse(readFileSync(app.catalogFile, 'utf8')), app.catalogFile);
  return new Set(allPrices(catalog).map(({ price }) => price.lookupKey));
}

/** The portal configuration's rule: a smaller amount or a shorter interval waits for the period's end. */
function atPeriodEnd(from: FlowPrice, to: FlowPrice): boolean {
  return to.amount < from.amount || (from.interval === 'year' && to.interval === 'month');
}

function money(amount: number, currency: string): string {
  return new Intl.NumberFormat('en', { style: 'currency', currency: currency.toUpperCase() }).format(amount / 100);
}

function day(seconds: number): string {
  return new Intl.DateTimeFormat('en', { dateStyle: 'long', timeZone: 'UTC' }).format(new Date(seconds * 1000));
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function layout(title: string, main: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><link rel="icon" href="data:,"><style>
:root { font-family: system-ui, sans-serif; line-height: 1.5; color: #1f2328; }
body { margin: 0; } header { padding: 0.75rem 1.5rem; background: #635bff; color: #fff; font-weight: 700; }
main { max-width: 32rem; margin: 0 auto; padding: 1.5rem; }
label { display: block; font-weight: 600; margin: 1rem 0 0.25rem; }
input { width: 100%; font: inherit; padding: 0.5rem; border: 1px solid #6e7781; border-radius: 6px; }
button { font: inherit; padding: 0.5rem 1rem; border-radius: 6px; border: 1px solid #6e7781; background: #f6f8fa; color: #1f2328; cursor: pointer; margin: 0.25rem 0; }
button.primary { background: #0b57d0; border-color: #0b57d0; color: #fff; }
:focus-visible { outline: 3px solid #0b57d0; outline-offset: 2px; }
.muted, .hint { color: #57606a; } .hint { font-size: 0.9rem; } .price { font-size: 1.25rem; }
.error { color: #a40e26; background: #ffebe9; padding: 0.5rem 0.75rem; border-radius: 6px; }
.notice { color: #116329; background: #dafbe1; padding: 0.5rem 0.75rem; border-radius: 6px; }
.row { display: flex; gap: 0.5rem; align-items: center; } .row label.inline { margin: 0; } .row input[type=number] { width: 6rem; } ul.plans { padding: 0; list-style: none; } ul.plans li { margin: 0.5rem 0; }
</style></head><body><header>Local Stripe (test mode)</header><main>${main}</main></body></html>`;
}
