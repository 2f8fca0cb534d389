// Where and how long we talk to Stripe, without the SDK: the client (client.ts) and the
// SDK-free meter event sender (meter-events.ts) share these, and the webhook's bundle,
// which must not carry the SDK, imports them through the sender.

/** What a client needs of the configuration (StripeConfig in src/config/config.ts has it). */
export interface StripeConnection {
  /** STRIPE_SECRET_KEY. */
  secretKey: string;
  /** STRIPE_API_BASE: another API host (stripe-mock), or undefined for Stripe's. */
  apiBase: URL | undefined;
}

/** Per attempt. Netlify ends a synchronous function after 10 s by default; checkout makes
 *  at most two Stripe calls of two attempts each, which must leave time for a clean 500.
 *  (The SDK's own default is 80 s with 2 retries.) */
export const STRIPE_TIMEOUT_MS = 3_000;
/** Retries on network errors, 409s and 5xx; Stripe adds idempotency keys to retried POSTs. */
export const STRIPE_MAX_NETWORK_RETRIES = 1;
