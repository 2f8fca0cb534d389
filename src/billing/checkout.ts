import type Stripe from 'stripe';
import type { AuthUser } from '../auth.ts';
import type { CheckoutConfig } from '../config.ts';
import { AlreadySubscribedError } from '../errors.ts';
import type { BillingStore } from '../store.ts';
import type { StripeLoader } from '../stripe-client.ts';
import { canStartCheckout } from './access.ts';
import { dashboardUrl } from './urls.ts';

export interface CheckoutDeps {
  config: CheckoutConfig;
  stripe: StripeLoader;
  store: BillingStore;
}

/** Starts a Stripe Checkout for the user's subscription and returns its URL. */
export async function startCheckout(deps: CheckoutDeps, user: AuthUser): Promise<{ url: string; customerCreated: boolean }> {
  // Load the Stripe SDK while the database answers (a cold start's longest waits).
  const loading = deps.stripe();
  loading.catch(() => {}); // awaited below, unless the user may not check out
  const account = await deps.store.getAccount(user.id);
  if (!canStartCheckout(account?.subscription?.status ?? null)) throw new AlreadySubscribedError();
  const stripe = await loading;

  const existing = account?.stripeCustomerId ?? null;
  const customerId = existing ?? (await createCustomer(stripe, deps.store, user, account?.deletedCustomerId ?? null));
  const metadata = { userId: user.id, ...(user.email && { email: user.email }) };

  const session = await stripe.checkout.sessions.create({
    mode: 'subscription',
    customer: customerId,
    // "Card payments only". This API version replaced payment_method_types with
    // allowed_payment_method_types (a filter on the methods Stripe would offer).
    allowed_payment_method_types: ['card'],
    line_items: [{ price: deps.config.priceId, quantity: 1 }],
    success_url: dashboardUrl(deps.config.appUrl, { checkout: 'success' }) + '&session_id={CHECKOUT_SESSION_ID}',
    cancel_url: dashboardUrl(deps.config.appUrl, { checkout: 'canceled' }),
    client_reference_id: user.id,
    metadata,
    subscription_data: { metadata },
  });
  if (!session.url) throw new Error(`Stripe returned checkout session ${session.id} without a url`);
  return { url: session.url, customerCreated: existing === null };
}

/**
 * Creates the user's one Stripe customer. Two concurrent first checkouts send the same
 * idempotency key, so Stripe answers both with one customer; and the database keeps the
 * first link it stores, so both sessions use the same customer even past the key's
 * 24-hour lifetime.
 */
async function createCustomer(stripe: Stripe, store: BillingStore, user: AuthUser, deletedCustomerId: string | null): Promise<string> {
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
