// The shipped catalog (billing-catalog.json), for tests of checkout by plan, /plans,
// status and the SQL functions. test/global-setup.ts pushes it to the local stack's
// Stripe (the mock, through the bridge that remembers prices) and database once, with
// the real billing:setup code, before any test file runs: files running side by side
// would otherwise race to create the same lookup keys.

import Stripe from 'stripe';
import { pushCatalog, SHIPPED_CATALOG } from '../../scripts/lib/local-catalog.ts';
import type { SetupReport } from '../../src/billing/setup.ts';

export const CATALOG_FILE = SHIPPED_CATALOG;

export function catalogEnv(): Record<string, string> {
  return { BILLING_CATALOG: CATALOG_FILE };
}

/** Runs billing:setup's code for `file` against the local stack. */
export function runSetup(file: string = CATALOG_FILE, dryRun = false): Promise<SetupReport> {
  return pushCatalog(process.env, file, dryRun);
}

/** The Stripe price id of a lookup key, as the local Stripe holds it. */
export async function priceIdOf(lookupKey: string): Promise<string> {
  const stripe = new Stripe(process.env['STRIPE_SECRET_KEY'] ?? '', {
    host: new URL(process.env['STRIPE_API_BASE'] ?? '').hostname,
    port: Number(new URL(process.env['STRIPE_API_BASE'] ?? '').port),
    protocol: 'http',
  });
  const { data } = await stripe.prices.list({ lookup_keys: [lookupKey], active: true });
  const price = data.find((p) => p.lookup_key === lookupKey);
  if (!price) throw new Error(`no price ${lookupKey} in the local Stripe`);
  return price.id;
}
