// POST /api/stripe/webhook: Stripe's event deliveries, verified and applied at most once.
import { applyStripeEvent, MAX_EVENT_BYTES, verifyStripeEvent } from '../../src/events/webhook.ts';
import { CONFIG_VARIABLES, loadWebhookConfig } from '../../src/config/config.ts';
import { readBytesWithin } from '../../src/http/body.ts';
import { defineEndpoint } from '../../src/http/endpoint.ts';
import { createMeterDeps } from '../../src/meters/report.ts';
import { createStore } from '../../src/database/store.ts';

export default defineEndpoint({
  name: 'webhook',
  methods: ['POST'],
  envVars: CONFIG_VARIABLES,
  deps: (env) => {
    const config = loadWebhookConfig(env);
    // Verifying a delivery needs only the secret (src/stripe/signature.ts); the Stripe
    // client is built only when an invoice.created flushes meter usage.
    return { config, store: createStore(config.store), meters: createMeterDeps(config, 'webhook') };
  },
  run: async (req, deps, scope) => {
    // The signature covers the exact bytes Stripe sent: read them before anything decodes them.
    const rawBody = await readBytesWithin(req, MAX_EVENT_BYTES);
    const event = verifyStripeEvent(deps.config, rawBody, req.headers.get('stripe-signature'));
    // Before applying, so that every line about this delivery, a failure's too, names it.
    const about = { eventId: event.id, eventType: event.type, apiVersion: event.apiVersion };
    scope.annotate(about);
    const { alert, ...result } = await applyStripeEvent(deps, event);
    scope.annotate(result);
    if (alert) scope.log[alert]('event not applied', { ...about, ...result });
    return { body: { received: true } };
  },
});
