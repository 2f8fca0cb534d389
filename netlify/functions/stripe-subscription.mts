// GET /api/stripe/subscription[?team=<uuid>]: the signed-in user's subscription, or that
// of a team they are in, and whether it gives access now. Needs no Stripe client: it
// only reads the store.
import { bearerToken, createTokenVerifier } from '../../src/http/auth.ts';
import { subscriptionStatus } from '../../src/accounts/status.ts';
import { teamIdFrom } from '../../src/teams/subject.ts';
import { CONFIG_VARIABLES, loadStatusConfig } from '../../src/config/config.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/database/store.ts';

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
    const team = teamIdFrom(new URL(req.url).searchParams.get('team') ?? undefined);
    if (team) scope.annotate({ teamId: team });
    const body = await subscriptionStatus(deps, user, team);
    scope.annotate({ subscriptionStatus: body.subscription?.status ?? 'none', access: body.subscription?.access ?? false });
    return { body };
  },
});
