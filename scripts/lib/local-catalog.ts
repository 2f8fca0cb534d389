// The shipped catalog (billing-catalog.json) in the local Stripe and database: the real
// billing:setup code run against the stack (stripe-mock through the bridge, which
// remembers the prices it creates). A stateless mock keeps nothing between runs, so
// `npm run dev` and the tests run it at start; it is idempotent.

import { fileURLToPath } from 'node:url';
import { setupStripe, type SetupReport } from '../../src/setup/setup.ts';
import { loadSetupConfig } from '../../src/config/config.ts';
import { createStore } from '../../src/database/store.ts';
import { createStripe } from '../../src/stripe/client.ts';

export const SHIPPED_CATALOG = fileURLToPath(new URL('../../billing-catalog.json', import.meta.url));

/** Pushes `catalogFile` with the Stripe and Supabase of `env` (STRIPE_API_BASE, URL, …). */
export async function pushCatalog(env: Record<string, string | undefined>, catalogFile: string = SHIPPED_CATALOG, dryRun = false): Promise<SetupReport> {
  const config = loadSetupConfig({ ...env, BILLING_CATALOG: catalogFile });
  return setupStripe({ stripe: await createStripe(config.stripe), store: createStore(config.store), catalog: config.catalog, appUrl: config.appUrl }, { dryRun });
}
