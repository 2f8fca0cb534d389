// Scheduled, hourly: the full reconcile once a day, paged across runs
// (reconcileOnSchedule in src/events/reconcile.ts), so state a webhook never brought,
// and the catch-up could not (older than Stripe's 30 days of events), is recovered.
import type { Config } from '@netlify/functions';
import { reconcileOnSchedule } from '../../src/events/reconcile.ts';
import { loadJobConfig } from '../../src/config/config.ts';
import { defineScheduledJob } from '../../src/http/scheduled.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';

export default defineScheduledJob({
  name: 'reconcile',
  deps: (env) => {
    const config = loadJobConfig(env);
    return { config, store: createStore(config.store), stripe: lazyStripe(config.stripe) };
  },
  run: async ({ config, store, stripe }, { holder }) =>
    reconcileOnSchedule({ stripe: await stripe(), store, livemode: config.stripe.mode === 'live', scope: config.scope }, { holder }),
});

export const config: Config = { schedule: '@hourly' };
