// POST /api/stripe/checkout: a Stripe Checkout URL for the signed-in user's subscription.
import { bearerToken, createTokenVerifier } from '../../src/auth.ts';
import { startCheckout } from '../../src/billing/checkout.ts';
import { CONFIG_VARIABLES, loadCheckoutConfig } from '../../src/config.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/store.ts';
import { lazyStripe } from '../../src/stripe-client.ts';

export default defineEndpoint({
  name: 'checkout',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadCheckoutConfig(env);
    return { config, verifier: createTokenVerifier(config.auth), stripe: lazyStripe(config.stripe), store: createStore(config.store) };
  },
  run: async (req, deps, scope) => {
    const user = await deps.verifier.verify(bearerToken(req.headers.get('authorization')));
    scope.annotate({ userId: user.id });
    const { url, customerCreated } = await startCheckout(deps, user);
    scope.annotate({ customerCreated });
    return { body: { url } };
  },
});
