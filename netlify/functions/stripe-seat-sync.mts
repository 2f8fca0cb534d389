// Scheduled, every minute: sets the Stripe quantity of every per-seat subscription whose
// team's member count it does not match (src/teams/seats.ts), so a change whose POST
// /api/stripe/seats never came, or failed, is billed within two minutes.
import type { Config } from '@netlify/functions';
import { loadJobConfig } from '../../src/config/config.ts';
import { defineScheduledJob } from '../../src/http/scheduled.ts';
import { createStore } from '../../src/database/store.ts';
import { lazyStripe } from '../../src/stripe/client.ts';
import { syncDueSeats } from '../../src/teams/seats.ts';

export default defineScheduledJob({
  name: 'seat-sync',
  deps: (env) => {
    const config = loadJobConfig(env);
    return { config, store: createStore(config.store), stripe: lazyStripe(config.stripe) };
  },
  run: ({ config, store, stripe }, { holder }) =>
    syncDueSeats({ stripe, store, scope: config.scope, livemode: config.stripe.mode === 'live' }, { holder }),
});

export const config: Config = { schedule: '* * * * *' };
