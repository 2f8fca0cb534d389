// Scheduled, every 5 minutes: sends each subject's overage of a billed meter for the
// hours that ended since, as Stripe meter events with deterministic identifiers through
// the outbox (src/meters/report.ts), so usage reaches Stripe once, within minutes of its
// hour, whatever fails on the way.
import type { Config } from '@netlify/functions';
import { loadJobConfig } from '../../src/config/config.ts';
import { defineScheduledJob } from '../../src/http/scheduled.ts';
import { createMeterDeps, reportUsage } from '../../src/meters/report.ts';
import { createStore } from '../../src/database/store.ts';

export default defineScheduledJob({
  name: 'meter-report',
  deps: (env) => {
    const config = loadJobConfig(env);
    return { ...createMeterDeps(config, 'meter-report'), jobs: createStore(config.store) };
  },
  run: (deps, { holder }) => reportUsage(deps, { holder }),
});

export const config: Config = { schedule: '*/5 * * * *' };
