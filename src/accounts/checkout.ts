import type Stripe from 'stripe';
import type { AuthUser } from '../http/auth.ts';
import type { CheckoutConfig } from '../config/config.ts';
import { AlreadySubscribedError, LimitsExceededError, PlanUnavailableError, UnknownPriceError } from '../core/errors.ts';
import { jsonObjectBody } from '../http/body.ts';
import type { BillingStore } from '../database/store.ts';
import type { StripeLoader } from '../stripe/client.ts';
import { canStartCheckout } from '../database/access.ts';
import { billedMeters, priceByLookupKey, type Catalog, type Interval, type Plan } from '../catalog/catalog.ts';
import type { CatalogPrices } from '../catalog/prices.ts';
import { seatsAtCheckout } from '../teams/seats.ts';
import { openSubject, teamIdFrom, type Subject } from '../teams/subject.ts';
import { dashboardUrl } from './urls.ts';

export interface CheckoutDeps {
  config: CheckoutConfig;
  stripe: StripeLoader;
  store: BillingStore;
  /** The catalog's prices in Stripe; present when config.catalog is. */
  prices: CatalogPrices | null;
}

/** What the caller asked for: a catalog price by lookup key, or the default (null);
 *  for a team of theirs, or for themselves (null). */
export interface CheckoutRequest {
  price: string | null;
  team: string | null;
}

/** How long a Checkout Session stays open (Stripe's default), so how long its trial offer holds. */
const TRIAL_OFFER_SECONDS = 24 * 3600;

/** The optional body: none, `{}`, or `{"price": "<lookup key>", "team": "<uuid>"}`, both
 *  optional; nothing else is read.
 *  Anything else that is sent must be a JSON object: a client that meant a price and sent
 *  it broken is told so (400), never sold the default plan. */
export function parseCheckoutBody(text: string): CheckoutRequest {
  const fields = jsonObjectBody(text);
  const team = teamIdFrom(fields['team']);
  const price = fields['price'];
  if (price === undefined || price === null) return { price: null, team };
  if (typeof price !== 'string') throw new UnknownPriceError();
  return { price, team };
}

/** The checkout's price and plan: the seed's STRIPE_PRICE_ID, or a catalog price. */
function choosePrice(catalog: Catalog | null, requested: string | null): { lookupKey: string | null; plan: Plan | null; interval: Interval | null } {
  if (!catalog) {
    if (requested !== null) throw new UnknownPriceError();
    return { lookupKey: null, plan: null, interval: null };
  }
  const found = priceByLookupKey(catalog, requested ?? catalog.defaultPrice);
  if (!found) throw new UnknownPriceError();
  return { lookupKey: found.price.lookupKey, plan: found.plan, interval: found.price.interval };
}

/** Refuses (400) a plan whose limits, or its trial's (`trial`), the subject's counts
 *  already pass (`exceeded`, the database's answer): it would start over them, and every
 *  new row would be refused. The message lists them as the plan does. */
function refuseExceededLimits(plan: Plan, exceeded: readonly string[], trial: boolean): void {
  if (exceeded.length === 0) return;
  const order = [...Object.keys(plan.limits), ...Object.keys(trial ? (plan.trial?.limits ?? {}) : {})];
  const place = (key: string) => (order.includes(key) ? order.indexOf(key) : order.length);
  throw new LimitsExceededError([...exceeded].sort((a, b) => place(a) - place(b)));
}

/** Starts a Stripe Checkout for the subscription of the user, or of a team they manage,
 *  and returns its URL. */
export async function startCheckout(
  deps: CheckoutDeps,
  user: AuthUser,
  request: CheckoutRequest = { price: null, team: null },
): Promise<{ url: string; customerCreated: boolean; price: string | null; trialDays: number | null }> {
  const chosen = choosePrice(deps.config.catalog, request.price); // 400 before any I/O
  // Load the Stripe SDK while the database answers (a cold start's longest waits).
  const loading = deps.stripe();
  loading.catch(() => {}); // awaited below, unless the user may not check out
  const plan = chosen.plan;
  // The limits the subject's counts already pass, the plan's and its trial's, come with
  // the context: the database decides.
  const { subject, account, callerHadTrial, exceededLimits } = await openSubject(deps.store, user, {
    team: request.team,
    need: 'manager',
    action: 'checkout',
    ...(plan && { plan: { key: plan.key, trial: plan.trial !== null } }),
  });
  if (!canStartCheckout(account?.subscription?.status ?? null)) throw new AlreadySubscribedError();
  // A plan's trial, once per subject ever: not for anyone who had one, whatever became of
  // it; and not when its buyer had one, for themselves or a team (a user must not trial
  // team after team), nor while a trial checkout of theirs for another subject is open
  // (offerTrial, below).
  const hadTrial = (account?.hadTrial ?? false) || callerHadTrial;
  const mayTrial = plan?.trial != null && !hadTrial;
  // A trial's limits apply first: a checkout that would start one is held to them.
  if (plan) refuseExceededLimits(plan, mayTrial ? exceededLimits.trial : exceededLimits.plan, mayTrial);
  const stripe = await loading;

  let priceId = deps.config.priceId;
  // The plan's billed meters: a metered item each, without a quantity (Stripe bills
  // what the meter reports).
  const meteredPriceIds: string[] = [];
  if (chosen.lookupKey !== null) {
    const inStripe = await deps.prices?.get();
    const forSale = (lookupKey: string): string => {
      const stripePrice = inStripe?.forSale.get(lookupKey);
      // Under our lookup key, a price that is not ours (logged where prices are read). A
      // plan is not sold without its metered price either: its overage would go unbilled.
      if (!stripePrice && inStripe?.mismatched.has(lookupKey)) throw new PlanUnavailableError();
      // In the catalog but not in Stripe: billing:setup has not been run on this account.
      if (!stripePrice) throw new Error(`price ${lookupKey} is not in Stripe; run npm run billing:setup`);
      return stripePrice.priceId;
    };
    priceId = forSale(chosen.lookupKey);
    if (chosen.plan && chosen.interval) for (const entry of billedMeters(chosen.plan, chosen.interval)) meteredPriceIds.push(forSale(entry.lookupKey));
  }
  if (!priceId) throw new Error('no price to sell');
  const catalog = deps.config.catalog;
  const trial = chosen.plan?.trial && mayTrial && (await deps.store.offerTrial(user.id, subject.id, TRIAL_OFFER_SECONDS)) ? chosen.plan.trial : null;
  // No trial after all (another of the buyer's trial checkouts is open): the plan's own limits.
  if (plan && mayTrial && !trial) refuseExceededLimits(plan, exceededLimits.plan, false);

  const existing = account?.stripeCustomerId ?? null;
  const customerId = existing ?? (await createCustomer(stripe, deps.store, user, subject, account?.deletedCustomerId ?? null));
  // The buyer, and the team they buy for: the subscription belongs to the team through
  // its stored customer; teamId is for people reading Stripe, and for sync's checks.
  const metadata = { userId: user.id, ...(user.email && { email: user.email }), ...(subject.team && { teamId: subject.id }) };

  const session = await stripe.checkout.sessions.create({
    mode: 'subscription',
    customer: customerId,
    // "Card payments only". This API version replaced payment_method_types with
    // allowed_payment_method_types (a filter on the methods Stripe would offer).
    allowed_payment_method_types: ['card'],
    line_items: [{ price: priceId, quantity: seatsAtCheckout(chosen.plan, subject) }, ...meteredPriceIds.map((price) => ({ price }))],
    success_url: dashboardUrl(deps.config.appUrl, { checkout: 'success' }) + '&session_id={CHECKOUT_SESSION_ID}',
    cancel_url: dashboardUrl(deps.config.appUrl, { checkout: 'canceled' }),
    client_reference_id: user.id,
    metadata,
    ...(catalog?.allowPromotionCodes && { allow_promotion_codes: true }),
    // Stripe Tax needs the customer's address; Checkout collects it and saves it on the customer.
    ...(catalog?.automaticTax && { automatic_tax: { enabled: true }, customer_update: { address: 'auto' as const } }),
    // Without a card: Checkout asks for none while nothing is due today.
    ...(trial && !trial.cardRequired && { payment_method_collection: 'if_required' as const }),
    subscription_data: {
      metadata,
      ...(trial && { trial_period_days: trial.days }),
      ...(trial && !trial.cardRequired && { trial_settings: { end_behavior: { missing_payment_method: trial.withoutCard } } }),
    },
  });
  if (!session.url) throw new Error(`Stripe returned checkout session ${session.id} without a url`);
  return { url: session.url, customerCreated: existing === null, price: chosen.lookupKey, trialDays: trial?.days ?? null };
}

/**
 * Creates the subject's one Stripe customer. Two concurrent first checkouts send the same
 * idempotency key, so Stripe answers both with one customer; and the database keeps the
 * first link it stores, so both sessions use the same customer even past the key's
 * 24-hour lifetime. A team's customer is created with what any of its managers would
 * send (Stripe refuses a key reused with other parameters), so not with the buyer's
 * email: Checkout asks for the billing email, and a manager can change it in the portal.
 */
async function createCustomer(stripe: Stripe, store: BillingStore, user: AuthUser, subject: Subject, deletedCustomerId: string | null): Promise<string> {
  if (subject.team) {
    const customer = await stripe.customers.create({ metadata: { teamId: subject.id } }, { idempotencyKey: teamCustomerIdempotencyKey(subject.id, deletedCustomerId) });
    return store.linkCustomer(subject.id, customer.id, undefined);
  }
  const customer = await stripe.customers.create(
    { ...(user.email && { email: user.email }), metadata: { userId: user.id } },
    { idempotencyKey: customerIdempotencyKey(user.id, deletedCustomerId) },
  );
  return store.linkCustomer(user.id, customer.id, user.email);
}

/** One key per user, and a new one after their customer was deleted in Stripe (the old
 *  key would answer, for 24 hours, with the deleted customer). */
export function customerIdempotencyKey(userId: string, deletedCustomerId: string | null = null): string {
  return deletedCustomerId ? `billing-customer-${userId}-after-${deletedCustomerId}` : `billing-customer-${userId}`;
}

/** The same for a team's one customer, whichever of its managers checks out first. */
export function teamCustomerIdempotencyKey(teamId: string, deletedCustomerId: string | null = null): string {
  return deletedCustomerId ? `billing-team-customer-${teamId}-after-${deletedCustomerId}` : `billing-team-customer-${teamId}`;
}
