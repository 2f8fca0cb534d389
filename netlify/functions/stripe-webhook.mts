// POST /api/stripe/webhook: Stripe's event deliveries, verified and applied at most once.
import { MAX_EVENT_BYTES, receiveStripeEvent } from '../../src/billing/webhook.ts';
import { CONFIG_VARIABLES, loadWebhookConfig } from '../../src/config.ts';
import { readTextWithin } from '../../src/http/body.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/store.ts';

export default defineEndpoint({
  name: 'webhook',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadWebhookConfig(env);
    // No Stripe client: verifying a delivery needs only the secret (src/billing/signature.ts).
    return { config, store: createStore(config.store) };
  },
  run: async (req, deps, scope) => {
    // The signature covers the exact bytes Stripe sent: read them before anything parses them.
    const rawBody = await readTextWithin(req, MAX_EVENT_BYTES);
    const { warn, ...result } = await receiveStripeEvent(deps, rawBody, req.headers.get('stripe-signature'));
    scope.annotate(result);
    if (warn) scope.log.warn('event not applied', result);
    return { body: { received: true } };
  },
});
