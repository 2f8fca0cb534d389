// The shipped catalog (billing-catalog.json), for tests of checkout by plan, /plans,
// status and the SQL functions. test/global-setup.ts pushes it to the local stack's
// Stripe (the mock, through the bridge that remembers prices) and database once, with
// the real billing:setup code, before any test file runs: files running side by side
// would otherwise race to create the same lookup keys.

import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Stripe from 'stripe';
import { pushCatalog, SHIPPED_CATALOG } from '../../scripts/lib/local-catalog.ts';
import type { Interval } from '../../src/catalog/catalog.ts';
import type { SetupReport } from '../../src/setup/setup.ts';

export const CATALOG_FILE = SHIPPED_CATALOG;

export function catalogEnv(): Record<string, string> {
  return { BILLING_CATALOG: CATALOG_FILE };
}

/** Runs billing:setup's code for `file` against the local stack. */
export function runSetup(file: string = CATALOG_FILE, dryRun = false): Promise<SetupReport> {
  return pushCatalog(process.env, file, dryRun);
}

/**
 * The shipped catalog with its own ids and keys (plans `pro_<tag>`, products
 * `analytics_pro_<tag>`, lookup keys `pro_monthly_<tag>`, …): a test that changes what
 * Stripe holds under its keys, or tells its requests apart on the shared mock, uses one.
 */
export async function uniqueCatalog(): Promise<{ file: string; tag: string }> {
  const tag = randomBytes(4).toString('hex');
  const text = (await readFile(CATALOG_FILE, 'utf8'))
    .replaceAll(/"(pro|business)_(monthly|yearly)"/g, `"$1_$2_${tag}"`)
    .replaceAll(/"analytics_(pro|business)"/g, `"analytics_$1_${tag}"`)
    .replace('"plans": {\n    "pro"', `"plans": {\n    "pro_${tag}"`)
    .replace('\n    "business": {', `\n    "business_${tag}": {`);
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'catalog-')), 'catalog.json');
  await writeFile(file, text);
  return { file, tag };
}

function localStripe(): Stripe {
  const base = new URL(process.env['STRIPE_API_BASE'] ?? '');
  return new Stripe(process.env['STRIPE_SECRET_KEY'] ?? '', { host: base.hostname, port: Number(base.port), protocol: 'http' });
}

/** What another app on the same Stripe account does when its own setup runs: creates
 *  its price under `lookupKey` with transfer_lookup_key, taking the key from ours. */
export async function takeLookupKey(
  lookupKey: string,
  price: { product: string; amount: number; currency: string; interval: Interval },
  shape: Pick<Stripe.PriceCreateParams, 'transform_quantity'> & { recurring?: Partial<Stripe.PriceCreateParams.Recurring> } = {},
): Promise<string> {
  const created = await localStripe().prices.create({
    product: price.product,
    unit_amount: price.amount,
    currency: price.currency,
    recurring: { interval: price.interval, ...shape.recurring },
    ...(shape.transform_quantity && { transform_quantity: shape.transform_quantity }),
    lookup_key: lookupKey,
    transfer_lookup_key: true,
  });
  return created.id;
}

/** The Stripe price id of a lookup key, as the local Stripe holds it. */
export async function priceIdOf(lookupKey: string): Promise<string> {
  const { data } = await localStripe().prices.list({ lookup_keys: [lookupKey], active: true });
  const price = data.find((p) => p.lookup_key === lookupKey);
  if (!price) throw new Error(`no price ${lookupKey} in the local Stripe`);
  return price.id;
}
