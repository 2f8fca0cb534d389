// Configuration from environment variables: read on first use, never at import,
// typed, and loud about what is missing. Each endpoint asks only for what it uses,
// so a deploy without, say, URL still verifies and applies webhooks.
// Every variable here is documented, line for line, in .env.example.

import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { CatalogError, catalogScope, parseCatalog, type Catalog } from '../catalog/catalog.ts';
import { productScope, type ProductScope } from '../catalog/product-scope.ts';

export type Env = Readonly<Record<string, string | undefined>>;

/** Every variable any loader below reads (see .env.example). */
export const CONFIG_VARIABLES = [
  'STRIPE_SECRET_KEY',
  'STRIPE_PRICE_ID',
  'STRIPE_PRODUCT_ID',
  'STRIPE_WEBHOOK_SECRET',
  'STRIPE_API_BASE',
  'URL',
  'SUPABASE_URL',
  'SUPABASE_SERVICE_ROLE_KEY',
  'SUPABASE_JWT_SECRET',
  'BILLING_CATALOG',
] as const;

/** Variables this code no longer reads, and where their setting lives now. A deploy that
 *  still sets one is refused by the loaders that read it, rather than silently ignored. */
const RETIRED_VARIABLES = {
  BILLING_GRACE_DAYS: 'is no longer read: the grace period is public.billing_settings.grace_days in the database, for the API and the SQL functions alike (docs/entitlements.md); set it there and remove the variable',
} as const;

/** A required variable is missing or malformed. Message names every variable at fault. */
export class ConfigError extends Error {
  readonly variables: readonly string[];
  constructor(problems: readonly { variable: string; problem: string }[]) {
    super(`Invalid configuration: ${problems.map((p) => `${p.variable} ${p.problem}`).join('; ')}`);
    this.name = 'ConfigError';
    this.variables = problems.map((p) => p.variable);
  }
}

export type StripeMode = 'test' | 'live';

export interface StripeConfig {
  /** STRIPE_SECRET_KEY: `sk_test_…`/`sk_live_…` or a restricted `rk_…` key. */
  secretKey: string;
  /** Whether the key is a live or a test key; events of the other mode are not applied. */
  mode: StripeMode;
  /** STRIPE_API_BASE: optional; another API host, e.g. stripe-mock at http://localhost:12111.
   *  On a deploy https://, or plain http on loopback. */
  apiBase: URL | undefined;
}

export interface StoreConfig {
  /** SUPABASE_URL: the project URL, e.g. https://abcd.supabase.co. */
  supabaseUrl: URL;
  /** SUPABASE_SERVICE_ROLE_KEY: bypasses row-level security; server side only. */
  serviceRoleKey: string;
  /** The project's REST API (PostgREST behind Supabase's gateway): `<SUPABASE_URL>/rest/v1`. */
  restUrl: URL;
}

export interface AuthConfig {
  /** SUPABASE_JWT_SECRET: the project's legacy JWT secret (HS256). Optional: a project
   *  that signs only with asymmetric keys has none, and then HS256 tokens are refused. */
  jwtSecret: string | undefined;
  /** Expected `iss` of access tokens: `<SUPABASE_URL>/auth/v1`. */
  issuer: string;
  /** The project's public signing keys (ES256/RS256): `<SUPABASE_URL>/auth/v1/.well-known/jwks.json`. */
  jwksUrl: URL;
}

export interface CheckoutConfig {
  stripe: StripeConfig;
  store: StoreConfig;
  auth: AuthConfig;
  /** STRIPE_PRICE_ID: the recurring price a checkout subscribes to, without a catalog.
   *  With one, checkout sells the catalog's prices and this is not read. */
  priceId: string | null;
  /** BILLING_CATALOG: the plans, when the backend sells a catalog. */
  catalog: Catalog | null;
  /** URL: the site's public URL; checkout and the portal return to its /dashboard. */
  appUrl: URL;
}

export interface PortalConfig {
  stripe: StripeConfig;
  store: StoreConfig;
  auth: AuthConfig;
  appUrl: URL;
}

export interface StatusConfig {
  store: StoreConfig;
  auth: AuthConfig;
  /** BILLING_CATALOG: which plans are sold per seat (a team's status then shows its seats). */
  catalog: Catalog | null;
}

export interface WebhookConfig {
  stripe: StripeConfig;
  store: StoreConfig;
  /** STRIPE_WEBHOOK_SECRET: the endpoint's signing secret, `whsec_…`; several, comma
   *  separated, while a secret is rolled or for a second endpoint. Any one verifying is enough. */
  webhookSecrets: readonly string[];
  /** What this backend sells (the catalog's products, STRIPE_PRICE_ID, STRIPE_PRODUCT_ID):
   *  only subscriptions to it are the user's subscription here. */
  scope: ProductScope;
}

export interface PlansConfig {
  stripe: StripeConfig;
  /** null: no catalog, so no plans to show. */
  catalog: Catalog | null;
}

export interface SetupConfig {
  stripe: StripeConfig;
  store: StoreConfig;
  catalog: Catalog;
  /** The site whose /api/stripe/webhook the endpoint delivers to, and the portal returns to. */
  appUrl: URL;
}

/** Webhook secrets anyone can read, by their SHA-256: `.env.example`'s placeholder
 *  (whsec_xxx) and the local stack's (scripts/lib/local-defaults.ts; digests, so that
 *  what ships holds no local secret). A deploy that lists one would accept deliveries
 *  forged by whoever read them, so only a local stack may use them. test/config.test.ts
 *  checks both files against these. */
export const PUBLISHED_WEBHOOK_SECRET_DIGESTS: ReadonlySet<string> = new Set([
  '20acb51291fa6262a5d0aa78a9507fe6217ec0b7819f9404127434c6cc34ac4a',
  '82229c551204101a2e9c9fa3281962bc29225dcc28f1b762d81c287b430ca008',
]);

const isPublished = (secret: string) => PUBLISHED_WEBHOOK_SECRET_DIGESTS.has(createHash('sha256').update(secret).digest('hex'));

type Problems = { variable: string; problem: string }[];

/** Collects problems across all variables so one error names them all. */
class Reader {
  readonly problems: Problems = [];
  readonly #env: Env;
  constructor(env: Env) {
    this.#env = env;
  }

  required(name: string): string {
    const value = this.#env[name]?.trim();
    if (!value) {
      this.problems.push({ variable: name, problem: 'is not set' });
      return '';
    }
    return value;
  }

  optional(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value ? value : undefined;
  }

  url(name: string, value: string | undefined): URL | undefined {
    if (value === undefined || value === '') return undefined;
    try {
      const url = new URL(value);
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('not http(s)');
      return url;
    } catch {
      this.problems.push({ variable: name, problem: 'is not an http(s) URL' });
      return undefined;
    }
  }

  prefixed(name: string, value: string, prefixes: readonly string[]): void {
    if (value && !prefixes.some((p) => value.startsWith(p))) {
      this.problems.push({ variable: name, problem: `must start with ${prefixes.join(' or ')}` });
    }
  }

  /** A comma-separated list; empty entries are dropped. */
  list(value: string | undefined): string[] {
    return (value ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  }

  /** SUPABASE_URL names a Supabase on this machine (npm run dev, the tests); unset or
   *  malformed is no proof of that. Read by loaders that do not otherwise need it. */
  localSupabase(): boolean {
    try {
      return isLoopback(new URL(this.optional('SUPABASE_URL') ?? ''));
    } catch {
      return false;
    }
  }

  /** A variable that must no longer be set (see RETIRED_VARIABLES). */
  retired(name: keyof typeof RETIRED_VARIABLES): void {
    if (this.optional(name) !== undefined) this.problems.push({ variable: name, problem: RETIRED_VARIABLES[name] });
  }

  done(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems);
  }
}

// A placeholder that only exists so the typed result can be built before done() throws.
const UNSET_URL = new URL('http://unset.invalid');

function readStripe(r: Reader): StripeConfig {
  const secretKey = r.required('STRIPE_SECRET_KEY');
  r.prefixed('STRIPE_SECRET_KEY', secretKey, ['sk_test_', 'sk_live_', 'rk_test_', 'rk_live_']);
  // Stripe's keys are letters, digits and _; anything else (a newline pasted with it) makes
  // the Authorization header unbuildable, and the error that says so quotes the key.
  if (secretKey && !/^[A-Za-z0-9_]+$/.test(secretKey)) {
    r.problems.push({ variable: 'STRIPE_SECRET_KEY', problem: 'holds a character other than letters, digits and _ (a stray space, quote or line break?)' });
  }
  const mode = /^[sr]k_live_/.test(secretKey) ? 'live' : 'test';
  const apiBase = r.url('STRIPE_API_BASE', r.optional('STRIPE_API_BASE'));
  // The key travels to it in every request. On a deploy (the rule of the webhook secrets:
  // any live key, or SUPABASE_URL off this machine) only over TLS; plain http stays for a
  // stripe-mock on this machine, where nothing crosses a network.
  if (apiBase && apiBase.protocol !== 'https:' && !isLoopback(apiBase) && (mode === 'live' || !r.localSupabase())) {
    r.problems.push({
      variable: 'STRIPE_API_BASE',
      problem: 'must be https:// on a deploy (a live key, or SUPABASE_URL off this machine): the secret key travels to it; plain http only for a host on this machine',
    });
  }
  return { secretKey, mode, apiBase };
}

function readStore(r: Reader): StoreConfig {
  const supabaseUrl = r.url('SUPABASE_URL', r.required('SUPABASE_URL')) ?? UNSET_URL;
  // The service-role key and the users' signing keys travel to it: only a Supabase on
  // this machine may be spoken to without TLS.
  if (supabaseUrl !== UNSET_URL && supabaseUrl.protocol !== 'https:' && !isLoopback(supabaseUrl)) {
    r.problems.push({ variable: 'SUPABASE_URL', problem: 'must be https:// (plain http only for a Supabase on this machine)' });
  }
  return {
    supabaseUrl,
    serviceRoleKey: r.required('SUPABASE_SERVICE_ROLE_KEY'),
    restUrl: new URL('rest/v1', withTrailingSlash(supabaseUrl)),
  };
}

function readAuth(r: Reader, store: StoreConfig): AuthConfig {
  const base = withTrailingSlash(store.supabaseUrl);
  return {
    jwtSecret: r.optional('SUPABASE_JWT_SECRET'),
    issuer: new URL('auth/v1', base).href,
    jwksUrl: new URL('auth/v1/.well-known/jwks.json', base),
  };
}

function readAppUrl(r: Reader): URL {
  return r.url('URL', r.required('URL')) ?? UNSET_URL;
}

/** With a catalog, STRIPE_PRICE_ID is optional (a price sold before the catalog, whose
 *  subscribers keep counting); without one it is what the backend sells. */
function readScope(r: Reader, catalog: Catalog | null): ProductScope {
  const priceId = catalog ? r.optional('STRIPE_PRICE_ID') : r.required('STRIPE_PRICE_ID');
  if (priceId) r.prefixed('STRIPE_PRICE_ID', priceId, ['price_']);
  const productIds = r.list(r.optional('STRIPE_PRODUCT_ID'));
  for (const id of productIds) r.prefixed('STRIPE_PRODUCT_ID', id, ['prod_']);
  const legacy = productScope(priceId ? [priceId] : [], productIds);
  return catalog ? catalogScope(catalog, legacy) : legacy;
}

const catalogs = new Map<string, Catalog>();

/** BILLING_CATALOG: a JSON file, relative to the working directory (the site's base
 *  directory, where Netlify puts `included_files`). Read once per path and version. */
function readCatalog(r: Reader): Catalog | null {
  const file = r.optional('BILLING_CATALOG');
  if (file === undefined) return null;
  const full = path.resolve(file);
  try {
    const key = `${full}@${statSync(full).mtimeMs}`;
    const cached = catalogs.get(key);
    if (cached) return cached;
    const catalog = parseCatalog(JSON.parse(readFileSync(full, 'utf8')) as unknown, file);
    catalogs.set(key, catalog);
    return catalog;
  } catch (error) {
    const problem = error instanceof CatalogError ? error.problems.join('; ') : error instanceof Error ? error.message : String(error);
    r.problems.push({ variable: 'BILLING_CATALOG', problem: `(${file}) is not a valid catalog: ${problem}` });
    return null;
  }
}

function withTrailingSlash(url: URL): URL {
  return url.pathname.endsWith('/') ? url : new URL(`${url.href}/`);
}

export function loadCheckoutConfig(env: Env): CheckoutConfig {
  const r = new Reader(env);
  const store = readStore(r);
  const catalog = readCatalog(r);
  const hadCatalogProblem = r.problems.some((p) => p.variable === 'BILLING_CATALOG');
  const priceId = catalog || hadCatalogProblem ? null : r.required('STRIPE_PRICE_ID');
  const config: CheckoutConfig = {
    stripe: readStripe(r),
    store,
    auth: readAuth(r, store),
    priceId,
    catalog,
    appUrl: readAppUrl(r),
  };
  if (priceId !== null) r.prefixed('STRIPE_PRICE_ID', priceId, ['price_']);
  r.done();
  return config;
}

export function loadPortalConfig(env: Env): PortalConfig {
  const r = new Reader(env);
  const store = readStore(r);
  const config: PortalConfig = {
    stripe: readStripe(r),
    store,
    auth: readAuth(r, store),
    appUrl: readAppUrl(r),
  };
  r.done();
  return config;
}

export function loadStatusConfig(env: Env): StatusConfig {
  const r = new Reader(env);
  const store = readStore(r);
  const config: StatusConfig = {
    store,
    auth: readAuth(r, store),
    catalog: readCatalog(r),
  };
  r.retired('BILLING_GRACE_DAYS');
  r.done();
  return config;
}

export function loadWebhookConfig(env: Env): WebhookConfig {
  const r = new Reader(env);
  const stripe = readStripe(r);
  const store = readStore(r);
  const config: WebhookConfig = {
    stripe,
    store,
    webhookSecrets: readWebhookSecrets(r, stripe.mode === 'live' || !isLoopback(store.supabaseUrl)),
    scope: readScope(r, readCatalog(r)),
  };
  r.done();
  return config;
}

/**
 * STRIPE_WEBHOOK_SECRET, a comma-separated list that fails closed: one bad entry refuses
 * the whole list, whatever else it holds, because any entry that verifies is enough. An
 * empty entry (`a,,b`, `,`) or a bare `whsec_` is never a secret; `deployed` (a live key,
 * or a database off this machine) also refuses the secrets that are published.
 */
function readWebhookSecrets(r: Reader, deployed: boolean): string[] {
  const name = 'STRIPE_WEBHOOK_SECRET';
  const raw = r.required(name);
  if (!raw) return [];
  const secrets = raw.split(',').map((entry) => entry.trim());
  if (secrets.some((secret) => secret === '' || secret === 'whsec_')) {
    r.problems.push({ variable: name, problem: 'holds an empty secret (an empty entry in the list, or whsec_ alone)' });
  }
  for (const secret of secrets) r.prefixed(name, secret, ['whsec_']);
  // Stripe's signing secrets are whsec_ and 32 or more letters and digits; a deploy
  // refuses anything shorter or odder (a placeholder from a README, a test's secret).
  if (deployed && secrets.some((secret) => secret.startsWith('whsec_') && !isPublished(secret) && !/^whsec_[A-Za-z0-9+/=]{32,}$/.test(secret))) {
    r.problems.push({ variable: name, problem: 'holds a value that is not a Stripe signing secret (whsec_ and at least 32 letters and digits)' });
  }
  if (deployed && secrets.some(isPublished)) {
    r.problems.push({
      variable: name,
      problem: "holds a published secret (.env.example's placeholder or the local development one), which would let anyone sign events; outside a local stack (SUPABASE_URL on loopback, a test key) list only the endpoint's own signing secrets",
    });
  }
  return secrets;
}

/** A Supabase on this machine: `npm run dev`, the tests. Anything else is a deploy. */
function isLoopback(url: URL): boolean {
  const host = url.hostname;
  return host === 'localhost' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

export interface SyncConfig extends StatusConfig {
  stripe: StripeConfig;
  scope: ProductScope;
}

/** POST /api/stripe/sync: reads Stripe, writes the store, answers the status body. */
export function loadSyncConfig(env: Env): SyncConfig {
  const r = new Reader(env);
  const store = readStore(r);
  const catalog = readCatalog(r);
  const config: SyncConfig = {
    stripe: readStripe(r),
    store,
    auth: readAuth(r, store),
    catalog,
    scope: readScope(r, catalog),
  };
  r.retired('BILLING_GRACE_DAYS');
  r.done();
  return config;
}

/** POST /api/stripe/seats: a team's member, Stripe's quantity set from the store. */
export interface SeatsConfig {
  stripe: StripeConfig;
  store: StoreConfig;
  auth: AuthConfig;
  /** What this backend sells; its catalog says which plans are per seat. */
  scope: ProductScope;
}

export function loadSeatsConfig(env: Env): SeatsConfig {
  const r = new Reader(env);
  const store = readStore(r);
  const config: SeatsConfig = { stripe: readStripe(r), store, auth: readAuth(r, store), scope: readScope(r, readCatalog(r)) };
  r.done();
  return config;
}

export interface JobConfig {
  stripe: StripeConfig;
  store: StoreConfig;
  scope: ProductScope;
}

/** The jobs that read Stripe and write the store (billing:reconcile, billing:events,
 *  billing:forget, the scheduled catch-up, reconcile and seat sync): Stripe, the store, what we sell. */
export function loadJobConfig(env: Env): JobConfig {
  const r = new Reader(env);
  const config: JobConfig = { stripe: readStripe(r), store: readStore(r), scope: readScope(r, readCatalog(r)) };
  r.done();
  return config;
}

/** GET /api/stripe/plans: the catalog, and Stripe to read its prices from. */
export function loadPlansConfig(env: Env): PlansConfig {
  const r = new Reader(env);
  const catalog = readCatalog(r);
  const config: PlansConfig = { stripe: readStripe(r), catalog };
  r.done();
  return config;
}

/** npm run billing:setup: the catalog to push, the Stripe account, and the site's URL. */
export function loadSetupConfig(env: Env): SetupConfig {
  const r = new Reader(env);
  const catalog = readCatalog(r);
  const stripe = readStripe(r);
  const store = readStore(r);
  const appUrl = readAppUrl(r);
  if (!catalog) {
    if (!r.problems.some((p) => p.variable === 'BILLING_CATALOG')) {
      r.problems.push({ variable: 'BILLING_CATALOG', problem: 'is not set (the catalog file to push, e.g. billing-catalog.json)' });
    }
    throw new ConfigError(r.problems);
  }
  r.done();
  return { stripe, store, catalog, appUrl };
}
