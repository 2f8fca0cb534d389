// GET /api/stripe/subscription: the signed-in user's subscription and whether it gives
// access now. Needs no Stripe client: it only reads the store.
import { bearerToken, createTokenVerifier } from '../../src/auth.ts';
import { subscriptionStatus } from '../../src/billing/status.ts';
import { CONFIG_VARIABLES, loadStatusConfig } from '../../src/config.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/store.ts';

export default defineEndpoint({
  name: 'subscription',
  methods: ['GET'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadStatusConfig(env);
    return { config, verifier: createTokenVerifier(config.auth), store: createStore(config.store) };
  },
  run: async (req, deps, scope) => {
    const user = await deps.verifier.verify(bearerToken(req.headers.get('authorization')));
    scope.annotate({ userId: user.id });
    const body = await subscriptionStatus(deps, user);
    scope.annotate({ subscriptionStatus: body.subscription?.status ?? 'none', access: body.subscription?.access ?? false });
    return { body };
  },
});
