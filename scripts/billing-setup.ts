// npm run billing:setup [-- --dry-run] [--add-metered-items]
//
// Pushes the catalog (BILLING_CATALOG, e.g. billing-catalog.json) to the Stripe account
// of STRIPE_SECRET_KEY, test or live, and stores it in the database (SUPABASE_URL,
// SUPABASE_SERVICE_ROLE_KEY): features, products, prices, the billing portal, the
// webhook endpoint for <URL>/api/stripe/webhook. Safe to run twice: the second run
// changes nothing (src/setup/setup.ts). --dry-run prints what would change and
// writes nothing.
//
// --add-metered-items, after setup: gives each active, trialing and past_due
// subscription to a plan that bills a meter the metered price of its plan and interval
// (subscriptions started before the price existed have none); idempotent.
//
// A new webhook endpoint's signing secret is printed once, on stdout; put it in
// STRIPE_WEBHOOK_SECRET. Exit status: 0 done, 1 Stripe or the database failed, 2 usage
// or configuration error.

import { parseArgs } from 'node:util';
import { addMeteredItems, setupStripe } from '../src/setup/setup.ts';
import { ConfigError, loadSetupConfig } from '../src/config/config.ts';
import { createStore } from '../src/database/store.ts';
import { createStripe } from '../src/stripe/client.ts';

const USAGE = 'usage: npm run billing:setup [-- --dry-run] [--add-metered-items]';

let values: { 'dry-run'?: boolean | undefined; 'add-metered-items'?: boolean | undefined; help?: boolean | undefined };
try {
  ({ values } = parseArgs({ options: { 'dry-run': { type: 'boolean' }, 'add-metered-items': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
} catch (error) {
  console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

let config;
try {
  config = loadSetupConfig(process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(2);
}

const dryRun = values['dry-run'] ?? false;
try {
  const stripe = await createStripe(config.stripe);
  const report = await setupStripe({ stripe, store: createStore(config.store), catalog: config.catalog, appUrl: config.appUrl }, { dryRun });
  const mode = config.stripe.mode === 'live' ? 'LIVE' : 'test';
  console.error(`${dryRun ? 'Would change' : 'Changed'} in the ${mode} Stripe account (catalog ${config.catalog.source}):`);
  for (const line of report.changes) console.error(`  ${dryRun ? '~' : '+'} ${line}`);
  if (report.changes.length === 0) console.error('  nothing: Stripe and the database already match the catalog');
  if (values['add-metered-items']) {
    const items = await addMeteredItems({ stripe, catalog: config.catalog }, { dryRun });
    console.error(`Metered items, over ${items.subscriptions} active, trialing and past_due subscriptions:`);
    for (const line of items.changes) console.error(`  ${dryRun ? '~' : '+'} ${line}`);
    if (items.changes.length === 0) console.error('  none missing');
    for (const line of items.otherPrice) console.error(`  ! ${line} (left as it is)`);
  } else {
    for (const line of report.next) console.error(`Next: ${line}`);
  }
  if (report.webhookSecret) {
    console.error(`Webhook endpoint ${report.webhookEndpointId ?? ''} created. Its signing secret, shown once: put it in STRIPE_WEBHOOK_SECRET.`);
    console.log(report.webhookSecret);
  }
} catch (error) {
  console.error(`billing:setup failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
