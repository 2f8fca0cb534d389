// POST /api/stripe/sync {"sessionId": "cs_…"}: the signed-in user's just-paid Checkout
// Session, read from Stripe and applied now, answered with their subscription status.
import { bearerToken, createTokenVerifier } from '../../src/http/auth.ts';
import { sessionIdFrom, syncCheckoutSession } from '../../src/accounts/sync.ts';
import { CONFIG_VARIABLES, loadSyncConfig } from '../../src/config/config.ts';
import { readTextWithin } from '../../src/http/body.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';

/** `{"sessionId": "cs_…"}` is about 100 bytes. */
const MAX_BODY_BYTES = 4096;

export default defineEndpoint({
  name: 'sync',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadSyncConfig(env);
    return { config, verifier: createTokenVerifier(config.auth), stripe: lazyStripe(config.stripe), store: createStore(config.store) };
  },
  run: async (req, deps, scope) => {
    const user = await deps.verifier.verify(bearerToken(req.headers.get('authorization')));
    scope.annotate({ userId: user.id });
    const sessionId = sessionIdFrom(await readTextWithin(req, MAX_BODY_BYTES));
    scope.annotate({ sessionId });
    const body = await syncCheckoutSession(deps, user, sessionId);
    scope.annotate({ subscriptionStatus: body.subscription?.status ?? 'none' });
    return { body };
  },
});
