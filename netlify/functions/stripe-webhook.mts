// POST /api/stripe/webhook: Stripe's event deliveries, verified and applied at most once.
import { receiveStripeEvent } from '../../src/billing/webhook.ts';
import { CONFIG_VARIABLES, loadWebhookConfig } from '../../src/config.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createStore } from '../../src/store.ts';
import { createStripe } from '../../src/stripe-client.ts';

export default defineEndpoint({
  name: 'webhook',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadWebhookConfig(env);
    return { config, stripe: createStripe(config.stripe), store: createStore(config.store) };
  },
  run: async (req, deps, scope) => {
    // The signature covers the exact bytes Stripe sent: read them before anything parses them.
    const rawBody = await req.text();
    const { warn, ...result } = await receiveStripeEvent(deps, rawBody, req.headers.get('stripe-signature'));
    scope.annotate(result);
    if (warn) scope.log.warn('event not applied', result);
    return { body: { received: true } };
  },
});
