// Scheduled, every 15 minutes: reads Stripe's event log since its cursor and applies
// what the ledger lacks (src/events/catch-up.ts), so missed webhooks heal themselves.
import type { Config } from '@netlify/functions';
import { catchUpEvents } from '../../src/events/catch-up.ts';
import { loadJobConfig } from '../../src/config/config.ts';
import { defineScheduledJob } from '../../src/http/scheduled.ts';
import { createMeterDeps } from '../../src/meters/report.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';

export default defineScheduledJob({
  name: 'catch-up',
  deps: (env) => {
    const config = loadJobConfig(env);
    const stripe = lazyStripe(config.stripe);
    return { config, store: createStore(config.store), stripe, meters: createMeterDeps(config, 'catch-up') };
  },
  run: async (deps, { holder }) => catchUpEvents({ ...deps, stripe: await deps.stripe() }, { holder }),
});

export const config: Config = { schedule: '*/15 * * * *' };
