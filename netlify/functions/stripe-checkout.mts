// POST /api/stripe/checkout: a Stripe Checkout URL for the signed-in user's subscription.
import { bearerToken, createTokenVerifier } from '../../src/http/auth.ts';
import { parseCheckoutBody, startCheckout } from '../../src/accounts/checkout.ts';
import { catalogPrices } from '../../src/catalog/prices.ts';
import { CONFIG_VARIABLES, loadCheckoutConfig } from '../../src/config/config.ts';
import { readTextWithin } from '../../src/http/body.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';

/** `{"price": "<lookup key>"}` is tiny; anything far bigger is not a checkout request. */
const MAX_CHECKOUT_BODY_BYTES = 4096;

export default defineEndpoint({
  name: 'checkout',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env, log) => {
    const config = loadCheckoutConfig(env);
    const stripe = lazyStripe(config.stripe);
    const prices = config.catalog ? catalogPrices(stripe, config.catalog, { log }) : null;
    return { config, verifier: createTokenVerifier(config.auth), stripe, store: createStore(config.store), prices };
  },
  run: async (req, deps, scope) => {
    const user = await deps.verifier.verify(bearerToken(req.headers.get('authorization')));
    scope.annotate({ userId: user.id });
    const request = parseCheckoutBody(await readTextWithin(req, MAX_CHECKOUT_BODY_BYTES));
    if (request.team) scope.annotate({ teamId: request.team });
    const { url, customerCreated, price, trialDays } = await startCheckout(deps, user, request);
    scope.annotate({ customerCreated, price, trialDays });
    return { body: { url } };
  },
});
