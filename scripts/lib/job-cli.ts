// What the command-line jobs share (billing:reconcile, billing:events, billing:forget):
// their configuration from the environment, or with --local from `npm run dev`'s stack,
// and failing with a usage or configuration error (exit 2).
//
// --local fills in the values of the local stack only when SUPABASE_URL is not set, so
// it can never quietly point a production environment at local defaults.

import { ConfigError, loadJobConfig, type Env, type JobConfig } from '../../src/config/config.ts';
import { DEV_PORTS, LOCAL_JWT_SECRET, LOCAL_STRIPE_PRICE_ID, LOCAL_STRIPE_PRODUCT_ID, LOCAL_STRIPE_SECRET_KEY } from './local-defaults.ts';
import { serviceRoleKey } from './tokens.ts';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function fail(message: string, code = 2): never {
  console.error(message);
  process.exit(code);
}

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function environment(local: boolean): Env {
  if (!local) return process.env;
  if (process.env['SUPABASE_URL']?.trim()) {
    fail('--local uses the local stack of `npm run dev`, but SUPABASE_URL is set: unset it, or drop --local to use the environment.');
  }
  const defaults: Env = {
    SUPABASE_URL: `http://127.0.0.1:${DEV_PORTS.gateway}`,
    SUPABASE_SERVICE_ROLE_KEY: serviceRoleKey(LOCAL_JWT_SECRET),
    STRIPE_SECRET_KEY: LOCAL_STRIPE_SECRET_KEY,
    STRIPE_API_BASE: `http://127.0.0.1:${DEV_PORTS.stripeBridge}`,
    STRIPE_PRICE_ID: LOCAL_STRIPE_PRICE_ID,
    STRIPE_PRODUCT_ID: LOCAL_STRIPE_PRODUCT_ID,
  };
  console.error(`using the local stack (npm run dev): Supabase ${defaults['SUPABASE_URL']}, Stripe ${defaults['STRIPE_API_BASE']}`);
  // Where a variable is set, it wins: e.g. STRIPE_API_BASE for a stripe-mock elsewhere.
  const env: Record<string, string | undefined> = { ...defaults };
  for (const name of ['SUPABASE_SERVICE_ROLE_KEY', 'STRIPE_SECRET_KEY', 'STRIPE_API_BASE', 'STRIPE_PRICE_ID', 'STRIPE_PRODUCT_ID']) {
    const value = process.env[name]?.trim();
    if (value) env[name] = value;
  }
  return env;
}

/** The job's configuration, or exit 2 naming what is missing. */
export function jobConfig(local: boolean): JobConfig {
  try {
    return loadJobConfig(environment(local));
  } catch (error) {
    if (error instanceof ConfigError) {
      fail(`${error.message}\nSet ${error.variables.join(', ')} (see .env.example), or pass --local to use the stack of \`npm run dev\`.`);
    }
    throw error;
  }
}
