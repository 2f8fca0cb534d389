// The Stripe client, built from config by the caller (never at import).

import Stripe from 'stripe';
import type { StripeConfig } from './config.ts';

/** Per attempt. Netlify ends a synchronous function after 10 s by default; checkout makes
 *  at most two Stripe calls of two attempts each, which must leave time for a clean 500.
 *  (The SDK's own default is 80 s with 2 retries.) */
export const STRIPE_TIMEOUT_MS = 3_000;
/** Retries on network errors, 409s and 5xx; Stripe adds idempotency keys to retried POSTs. */
export const STRIPE_MAX_NETWORK_RETRIES = 1;

export function createStripe(config: StripeConfig): Stripe {
  const base = config.apiBase;
  return new Stripe(config.secretKey, {
    timeout: STRIPE_TIMEOUT_MS,
    maxNetworkRetries: STRIPE_MAX_NETWORK_RETRIES,
    telemetry: false,
    appInfo: { name: 'stripe-billing-functions' },
    ...(base && {
      host: base.hostname,
      port: Number(base.port || (base.protocol === 'https:' ? 443 : 80)),
      protocol: base.protocol === 'https:' ? 'https' : 'http',
    }),
  });
}
