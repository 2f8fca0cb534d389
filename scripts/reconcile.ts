// npm run billing:reconcile [-- --user <uuid>] [--dry-run] [--local]
//
// Re-reads every subscription from Stripe (or one user's) and applies each one through
// the same ordered write as a webhook, recovering state a missed webhook left behind.
// Safe to run while webhooks arrive and safe to run again (src/events/reconcile.ts).
//
// Configuration comes from the environment: STRIPE_SECRET_KEY, STRIPE_API_BASE
// (optional), SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY. --local fills them in with the
// values of `npm run dev`'s stack, and only when SUPABASE_URL is not set, so it can
// never quietly point a production environment at local defaults.
//
// Progress goes to stderr, one summary line to stdout. Exit status: 0 done, 1 some
// subscriptions (or a page) failed, 2 usage or configuration error.

import { parseArgs } from 'node:util';
import { customerOfUser, reconcileSubscriptions, type ReconcileProgress, type ReconcileReport } from '../src/events/reconcile.ts';
import { createStore } from '../src/database/store.ts';
import { createStripe } from '../src/stripe/client.ts';
import { fail, jobConfig, UUID } from './lib/job-cli.ts';

const USAGE = 'usage: npm run billing:reconcile [-- [--user <uuid>] [--dry-run] [--local]]';

let values: { user?: string | undefined; 'dry-run'?: boolean | undefined; local?: boolean | undefined; help?: boolean | undefined };
try {
  ({ values } = parseArgs({
    options: {
      user: { type: 'string' },
      'dry-run': { type: 'boolean' },
      local: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  fail(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (values.user !== undefined && !UUID.test(values.user)) fail(`--user must be a user id (a UUID), got ${JSON.stringify(values.user)}`);

const config = jobConfig(values.local ?? false);
const stripe = await createStripe(config.stripe);
const store = createStore(config.store);
const dryRun = values['dry-run'] ?? false;

let customerId: string | undefined;
if (values.user !== undefined) {
  const found = await customerOfUser(store, values.user).catch((error: unknown) =>
    fail(`could not read user ${values.user}: ${error instanceof Error ? error.message : String(error)}`, 1),
  );
  if (!found) {
    console.log(`user ${values.user} has no Stripe customer: nothing to reconcile`);
    process.exit(0);
  }
  customerId = found;
}

const scope = `${config.stripe.mode} mode${customerId ? `, customer ${customerId} (user ${values.user})` : ', all customers'}${dryRun ? ', dry run: nothing is written' : ''}`;
console.error(`reconciling subscriptions from Stripe (${scope})`);

function progressLine(p: ReconcileProgress): string {
  if (p.type === 'rate_limited') {
    return `page ${p.page}: rate limited by Stripe (HTTP 429), retry ${p.attempt} in ${p.delayMs / 1000} s`;
  }
  const written = dryRun ? `${p.planned} to write` : `${p.applied} applied, ${p.stale} stale`;
  const extra = [
    p.duplicate > 0 && `${p.duplicate} duplicate`,
    p.ignored > 0 && `${p.ignored} ignored`,
    p.skipped > 0 && `${p.skipped} skipped`,
    p.failed > 0 && `${p.failed} failed`,
  ].filter(Boolean);
  return `page ${p.page}: ${p.seen} subscriptions, ${[written, ...extra].join(', ')}`;
}

function summary(r: ReconcileReport): string {
  const parts = [
    `${r.seen} subscriptions in ${r.pages} page(s)`,
    ...(r.dryRun ? [`${r.planned} would be written (dry run)`] : [`${r.applied} applied`, `${r.stale} stale`, `${r.duplicate} duplicate`]),
    `${r.skipped} skipped`,
    `${r.failures.length} failed`,
    ...(r.rateLimitRetries > 0 ? [`${r.rateLimitRetries} rate-limit retries`] : []),
  ];
  return `reconcile ${r.complete ? 'done' : 'INCOMPLETE'}: ${parts.join(', ')}`;
}

const report = await reconcileSubscriptions(
  { stripe, store, livemode: config.stripe.mode === 'live', scope: config.scope },
  { ...(customerId && { customerId }), dryRun, onProgress: (p) => console.error(progressLine(p)) },
);
for (const failure of report.failures) {
  console.error(`failed (${failure.stage}${failure.subscriptionId ? ` ${failure.subscriptionId}` : ''}): ${failure.message}`);
}
console.log(summary(report));
process.exitCode = report.failures.length > 0 || !report.complete ? 1 : 0;
