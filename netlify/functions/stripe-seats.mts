// POST /api/stripe/seats {"team": "<uuid>"}: after the product changed a team's members,
// sets its per-seat subscription's Stripe quantity to the member count (src/teams/seats.ts)
// and answers {"seats": {"billed", "members"}}. Any member of the team may call it.
import { randomUUID } from 'node:crypto';
import { bearerToken, createTokenVerifier } from '../../src/http/auth.ts';
import { CONFIG_VARIABLES, loadSeatsConfig } from '../../src/config/config.ts';
import { readTextWithin } from '../../src/http/body.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';
import { parseSeatsBody, updateSeats } from '../../src/teams/seats.ts';

/** `{"team": "<uuid>"}` is tiny. */
const MAX_BODY_BYTES = 4096;

export default defineEndpoint({
  name: 'seats',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadSeatsConfig(env);
    return { config, verifier: createTokenVerifier(config.auth), stripe: lazyStripe(config.stripe), store: createStore(config.store) };
  },
  run: async (req, deps, scope) => {
    const user = await deps.verifier.verify(bearerToken(req.headers.get('authorization')));
    scope.annotate({ userId: user.id });
    const team = parseSeatsBody(await readTextWithin(req, MAX_BODY_BYTES));
    scope.annotate({ teamId: team });
    // The lease's holder: this request.
    const { seats, sync } = await updateSeats(deps, user, team, `seats-${randomUUID()}`);
    scope.annotate({ seatSync: sync.result, billed: seats.billed, members: seats.members, updates: sync.updates, retries: sync.retries });
    return { body: { seats } };
  },
});
