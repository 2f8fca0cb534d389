// npm run billing:forget -- --user <uuid> [--local]
//
// Ends a user's billing when they delete their account (src/accounts/forget.ts): their
// email removed from their subscriptions' and Checkout Sessions' metadata, their live
// subscriptions canceled now, their Stripe customer deleted, their local link removed
// (the subscription rows stay, reading as canceled); in the teams they bought for, their
// id and email removed from what they bought there and from the team's customer, nothing
// canceled. Safe to run again.
// Configuration as for billing:reconcile (scripts/lib/job-cli.ts).
//
// One summary line to stdout. Exit status: 0 done, 1 failed, 2 usage or configuration error.

import { parseArgs } from 'node:util';
import { forgetSummary, forgetUser } from '../src/accounts/forget.ts';
import { createStore } from '../src/database/store.ts';
import { createStripe } from '../src/stripe/client.ts';
import { fail, jobConfig, messageOf, UUID } from './lib/job-cli.ts';

const USAGE = 'usage: npm run billing:forget -- --user <uuid> [--local]';

let values;
try {
  ({ values } = parseArgs({ options: { user: { type: 'string' }, local: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } } }));
} catch (error) {
  fail(`${messageOf(error)}\n${USAGE}`);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const userId = values.user;
if (userId === undefined || !UUID.test(userId)) fail(`--user must be a user id (a UUID)\n${USAGE}`);

const config = jobConfig(values.local);
const deps = { stripe: await createStripe(config.stripe), store: createStore(config.store), livemode: config.stripe.mode === 'live' };
try {
  console.log(forgetSummary(await forgetUser(deps, userId.toLowerCase())));
} catch (error) {
  console.error(`billing:forget failed for user ${userId}: ${messageOf(error)} (safe to run again)`);
  process.exitCode = 1;
}
