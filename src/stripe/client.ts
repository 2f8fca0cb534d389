// The Stripe client, built from config by the caller (never at import), on the first
// request that is about to call Stripe: a preflight, a 401 or an "Already subscribed"
// never builds one.
//
// The SDK itself is imported statically. In the bundle (scripts/lib/build.ts) that costs
// about 1 ms of module evaluation at import, measured; `await import('stripe')` instead
// makes esbuild wrap the SDK's modules in functions run on first use, which V8 parses a
// second time then: about 6 ms more on the first request that calls Stripe (measured on
// a cold checkout: its first request 6 ms sooner with the static import, its import 1 ms
// slower).

import Stripe from 'stripe';
import { STRIPE_MAX_NETWORK_RETRIES, STRIPE_TIMEOUT_MS, type StripeConnection } from './connection.ts';

/** A Stripe client on first call; the same one after. */
export type StripeLoader = () => Promise<Stripe>;

export function stripeOptions(config: StripeConnection): Stripe.StripeConfig {
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

export async function createStripe(config: StripeConnection): Promise<Stripe> {
  // Built on the event loop's next turn, not now: the caller starts its database read
  // right after asking for the client, and the read's request goes out on that turn.
  // Building (about 2.5 ms: the SDK makes every resource) then overlaps the database's
  // answer instead of delaying the request (a cold checkout's first request 2 ms sooner).
  await new Promise((resolve) => setImmediate(resolve));
  return new Stripe(config.secretKey, stripeOptions(config));
}

export function lazyStripe(config: StripeConnection): StripeLoader {
  let client: Promise<Stripe> | undefined;
  return () =>
    (client ??= createStripe(config).catch((error: unknown) => {
      client = undefined; // let the next request build it again
      throw error;
    }));
}
