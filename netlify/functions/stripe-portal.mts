// POST /api/stripe/portal (optional {"team": "<uuid>"}): a Stripe billing portal URL for
// the signed-in user's billing, or for that of a team they manage.
import { bearerToken, createTokenVerifier } from '../../src/http/auth.ts';
import { openPortal, parsePortalBody } from '../../src/accounts/portal.ts';
import { CONFIG_VARIABLES, loadPortalConfig } from '../../src/config/config.ts';
import { readTextWithin } from '../../src/http/body.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';

/** `{"team": "<uuid>"}` is tiny. */
const MAX_BODY_BYTES = 4096;

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
    const { team } = parsePortalBody(await readTextWithin(req, MAX_BODY_BYTES));
    if (team) scope.annotate({ teamId: team });
    return { body: await openPortal(deps, user, team) };
  },
});
