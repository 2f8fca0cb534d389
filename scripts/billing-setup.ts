// npm run billing:setup [-- --dry-run]
//
// Pushes the catalog (BILLING_CATALOG, e.g. billing-catalog.json) to the Stripe account
// of STRIPE_SECRET_KEY, test or live, and stores it in the database (SUPABASE_URL,
// SUPABASE_SERVICE_ROLE_KEY): features, products, prices, the billing portal, the
// webhook endpoint for <URL>/api/stripe/webhook. Safe to run twice: the second run
// changes nothing (src/billing/setup.ts). --dry-run prints what would change and
// writes nothing.
//
// A new webhook endpoint's signing secret is printed once, on stdout; put it in
// STRIPE_WEBHOOK_SECRET. Exit status: 0 done, 1 Stripe or the database failed, 2 usage
// or configuration error.

import { parseArgs } from 'node:util';
import { setupStripe } from '../src/billing/setup.ts';
import { ConfigError, loadSetupConfig } from '../src/config.ts';
import { createStore } from '../src/store.ts';
import { createStripe } from '../src/stripe-client.ts';

const USAGE = 'usage: npm run billing:setup [-- --dry-run]';

let values: { 'dry-run'?: boolean | undefined; help?: boolean | undefined };
try {
  ({ values } = parseArgs({ options: { 'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
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
  const report = await setupStripe(
    { stripe: await createStripe(config.stripe), store: createStore(config.store), catalog: config.catalog, appUrl: config.appUrl },
    { dryRun },
  );
  const mode = config.stripe.mode === 'live' ? 'LIVE' : 'test';
  console.error(`${dryRun ? 'Would change' : 'Changed'} in the ${mode} Stripe account (catalog ${config.catalog.source}):`);
  for (const line of report.changes) console.error(`  ${dryRun ? '~' : '+'} ${line}`);
  if (report.changes.length === 0) console.error('  nothing: Stripe and the database already match the catalog');
  if (report.webhookSecret) {
    console.error(`Webhook endpoint ${report.webhookEndpointId ?? ''} created. Its signing secret, shown once: put it in STRIPE_WEBHOOK_SECRET.`);
    console.log(report.webhookSecret);
  }
} catch (error) {
  console.error(`billing:setup failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
