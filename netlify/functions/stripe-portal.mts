// POST /api/stripe/portal: a Stripe billing portal URL for the signed-in user.
import { bearerToken, createTokenVerifier } from '../../src/auth.ts';
import { openPortal } from '../../src/billing/portal.ts';
import { CONFIG_VARIABLES, loadPortalConfig } from '../../src/config.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/store.ts';
import { lazyStripe } from '../../src/stripe-client.ts';

export default defineEndpoint({
  name: 'portal',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadPortalConfig(env);
    return { config, verifier: createTokenVerifier(config.auth), stripe: lazyStripe(config.stripe), store: createStore(config.store) };
  },
  run: async (req, deps, scope) => {
    const user = await deps.verifier.verify(bearerToken(req.headers.get('authorization')));
    scope.annotate({ userId: user.id });
    return { body: await openPortal(deps, user) };
  },
});
