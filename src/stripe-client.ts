// The Stripe client, built from config by the caller (never at import), and loaded only
// when a request is about to call Stripe: the SDK is about a megabyte of code, and a
// preflight, a 401 or an "Already subscribed" should not wait for it on a cold start.

import type Stripe from 'stripe';
import type { StripeConfig } from './config.ts';

/** Per attempt. Netlify ends a synchronous function after 10 s by default; checkout makes
 *  at most two Stripe calls of two attempts each, which must leave time for a clean 500.
 *  (The SDK's own default is 80 s with 2 retries.) */
export const STRIPE_TIMEOUT_MS = 3_000;
/** Retries on network errors, 409s and 5xx; Stripe adds idempotency keys to retried POSTs. */
export const STRIPE_MAX_NETWORK_RETRIES = 1;

/** A Stripe client on first call; the same one after. */
export type StripeLoader = () => Promise<Stripe>;

export function stripeOptions(config: StripeConfig): Stripe.StripeConfig {
  const base = config.apiBase;
  return {
    timeout: STRIPE_TIMEOUT_MS,
    maxNetworkRetries: STRIPE_MAX_NETWORK_RETRIES,
    telemetry: false,
    appInfo: { name: 'stripe-billing-functions' },
    ...(base && {
      host: base.hostname,
      port: Number(base.port || (base.protocol === 'https:' ? 443 : 80)),
      protocol: base.protocol === 'https:' ? 'https' : 'http',
    }),
  };
}

export async function createStripe(config: StripeConfig): Promise<Stripe> {
  const { default: StripeSdk } = await import('stripe');
  return new StripeSdk(config.secretKey, stripeOptions(config));
}

export function lazyStripe(config: StripeConfig): StripeLoader {
  let client: Promise<Stripe> | undefined;
  return () =>
    (client ??= createStripe(config).catch((error: unknown) => {
      client = undefined; // let the next request try the import again
      throw error;
    }));
}
