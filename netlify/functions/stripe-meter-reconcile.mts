// Scheduled, hourly: compares, per customer, meter and usage window, what Stripe's meter
// event summaries hold with the usage Stripe accepted from us, and repairs, cancels or
// logs each difference (src/meters/reconcile.ts).
import type { Config } from '@netlify/functions';
import { loadJobConfig } from '../../src/config/config.ts';
import { defineScheduledJob } from '../../src/http/scheduled.ts';
import { reconcileMeters } from '../../src/meters/reconcile.ts';
import { createMeterDeps } from '../../src/meters/report.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';

export default defineScheduledJob({
  name: 'meter-reconcile',
  deps: (env) => {
    const config = loadJobConfig(env);
    return { ...createMeterDeps(config, 'meter-reconcile'), stripe: lazyStripe(config.stripe), jobs: createStore(config.store) };
  },
  run: (deps, { holder }) => reconcileMeters(deps, { holder }),
});

export const config: Config = { schedule: '30 * * * *' };
