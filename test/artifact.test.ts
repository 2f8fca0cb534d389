// What ships is what is tested: the zips `netlify build --offline` makes (it runs
// `npm run build`, as Netlify does), each unpacked outside the project with no
// node_modules above it and invoked through Netlify's own ___netlify-entry-point.mjs in a
// fresh Node process, against the local stack. Sizes go to test-results/artifacts.json
// (CI prints them).

import { randomBytes, randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FUNCTIONS_OUT, functionBuildOptions, functionEntries } from '../scripts/lib/build.ts';
import { LOCAL_JWT_SECRET, LOCAL_STRIPE_WEBHOOK_SECRET } from '../scripts/lib/local-defaults.ts';
import {
  invoke,
  netlifyBuild,
  nodeModulesAbove,
  unpack,
  unpackRoot,
  writeRunner,
  type LambdaAnswer,
  type LambdaRequest,
  type NetlifyBuild,
  type Unpacked,
} from '../scripts/lib/netlify-artifact.ts';
import { CONFIG_VARIABLES } from '../src/config/config.ts';
import { CORS_EXPECTED, env, freshEvent, newUser, openStripeEventLog, query } from './support/stack.ts';

/** Every function of the site, as Netlify finds them. */
const FUNCTIONS = readdirSync('netlify/functions').filter((f) => f.endsWith('.mts')).map((f) => f.replace(/\.mts$/, '')).sort();
/** Where a zip holds its bundle: netlify.toml's included_files (the catalog) make Netlify
 *  keep the site's paths inside the zip. */
const bundleIn = (name: string) => `${FUNCTIONS_OUT}/${name}.mjs`;
const SITE = 'https://billing.example.com';
/** The most a function's zip may weigh beyond the no-op's (stripe-not-found answers without doing anything). */
const MAX_EXTRA_BYTES = 300 * 1024;
/** The functions that call Stripe through no SDK, so that their cold start does not load
 *  it: the webhook verifies signatures with node:crypto (src/stripe/signature.ts) and
 *  sends an invoice.created flush's meter events with fetch (src/stripe/meter-events.ts),
 *  as the meter reporter does; status and not-found call no Stripe at all. */
const WITHOUT_STRIPE_SDK = ['stripe-meter-report', 'stripe-not-found', 'stripe-subscription', 'stripe-webhook'];
/** Only the Stripe SDK's code holds this (its User-Agent, `Stripe/v1 NodeBindings/…`). */
const STRIPE_SDK_MARKER = 'NodeBindings';
/** The webhook's bundle measured 63 KB without the SDK, 308 KB with it (the SDK's
 *  modules are 240 KB of that): this bound fails if the SDK, or any large part of it, is back. */
const MAX_WEBHOOK_BUNDLE_BYTES = 100 * 1024;

let built: NetlifyBuild;
let root: string;
let runner: string;
const unpacked = new Map<string, Unpacked>();

/** The artifacts' own API key, and with it their own Stripe event log: the scheduled
 *  catch-up run below reads that log, not the shared one, which holds the events other
 *  files' quantity updates make (read here, with this site's catalog, they would change
 *  those files' subscriptions while their tests look at them). */
const STRIPE_KEY = `sk_test_artifact${randomBytes(6).toString('hex')}`;

/** The functions' variables only, as Netlify gives them (none of the test runner's). */
function functionEnv(): Record<string, string> {
  const variables = Object.fromEntries(CONFIG_VARIABLES.filter((name) => process.env[name] !== undefined).map((name) => [name, env(name)]));
  return { ...variables, STRIPE_SECRET_KEY: STRIPE_KEY };
}

beforeAll(async () => {
  await openStripeEventLog(STRIPE_KEY);
  built = await netlifyBuild();
  root = await unpackRoot();
  runner = await writeRunner(root);
  for (const { name, zip } of built.zips) unpacked.set(name, await unpack(zip, path.join(root, name)));
  await mkdir('test-results', { recursive: true });
  await writeFile(
    'test-results/artifacts.json',
    JSON.stringify(built.zips.map(({ name, zipBytes }) => ({ name, zipBytes, files: Object.keys(unpacked.get(name)?.files ?? {}).length })), null, 2),
  );
}, 180_000);

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
  if (built) await rm(built.site, { recursive: true, force: true });
});

async function run(name: string, requests: LambdaRequest[]): Promise<LambdaAnswer[]> {
  const dir = unpacked.get(name)?.dir;
  if (!dir) throw new Error(`no zip for ${name}`);
  const result = await invoke({ runner, dir, name, requests, env: functionEnv() });
  expect(result.answers).toHaveLength(requests.length);
  return result.answers;
}

const preflight = (route: string): LambdaRequest => ({
  url: `${SITE}/api/stripe/${route}`,
  method: 'OPTIONS',
  headers: { origin: 'https://dashboard.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
});

function expectPreflight(answer: LambdaAnswer | undefined): void {
  expect(answer?.status).toBe(204);
  expect(answer?.headers).toMatchObject(CORS_EXPECTED);
}

function expectError(answer: LambdaAnswer | undefined, status: number, error: string): void {
  expect(answer?.status, answer?.body).toBe(status);
  expect(answer?.headers['access-control-allow-origin']).toBe('*');
  expect(JSON.parse(answer?.body ?? '{}')).toEqual({ error });
}

describe('netlify build --offline', () => {
  it('packs every function, each as its bundle and Netlify\'s bootstrap, within 300 KB of the no-op', () => {
    expect(built.zips.map((z) => z.name)).toEqual(FUNCTIONS);
    const noop = built.zips.find((z) => z.name === 'stripe-not-found')?.zipBytes ?? 0;
    expect(noop).toBeGreaterThan(0);
    for (const { name, zipBytes } of built.zips) {
      expect(Object.keys(unpacked.get(name)?.files ?? {}).sort(), name).toEqual(
        ['___netlify-bootstrap.mjs', '___netlify-entry-point.mjs', '___netlify-metadata.json', '___netlify-telemetry.mjs', bundleIn(name), 'billing-catalog.json'].sort(),
      );
      expect(zipBytes - noop, `${name}: ${zipBytes} bytes, the no-op ${noop}`).toBeLessThanOrEqual(MAX_EXTRA_BYTES);
    }
  });

  it('ships no dev-only code: no scripts/, test/, fixtures, local secrets, the local sign-in and teams or the local Stripe pages', async () => {
    const fixtureIds: string[] = [];
    for (const file of await readdir('test/fixtures/events')) {
      fixtureIds.push((JSON.parse(await readFile(`test/fixtures/events/${file}`, 'utf8')) as { id: string }).id);
    }
    for (const [name, { dir }] of unpacked) {
      const bundle = await readFile(path.join(dir, bundleIn(name)), 'utf8');
      // The local Checkout and portal (scripts/stack/hosted-pages.ts) and their routes on the bridge.
      const localStripe = ['hosted-pages', 'createHostedPages', 'Local Stripe (test mode)', '__bridge', 'Advance to the next renewal', '4000002760003184'];
      // The local teams of the test users (scripts/stack/dev-teams.ts).
      const localTeams = ['__dev/teams', 'createDevTeams'];
      for (const needle of ['scripts/', 'test/', 'fixtures', 'stripe-mock', 'dev/token', 'local-defaults', LOCAL_JWT_SECRET, LOCAL_STRIPE_WEBHOOK_SECRET, ...fixtureIds, ...localStripe, ...localTeams]) {
        expect(bundle.includes(needle), `${name} contains ${needle}`).toBe(false);
      }
    }
  });

  it('ships the Stripe SDK only in the functions that call it: none in the webhook, the meter reporter, status and not-found', async () => {
    for (const [name, { dir }] of unpacked) {
      const bundle = await readFile(path.join(dir, bundleIn(name)), 'utf8');
      expect(bundle.includes(STRIPE_SDK_MARKER), `${name} holds the Stripe SDK`).toBe(!WITHOUT_STRIPE_SDK.includes(name));
    }
  });

  it('unpacks outside the project, with no node_modules above a function', () => {
    for (const { dir } of unpacked.values()) expect(nodeModulesAbove(dir), dir).toEqual([]);
  });

  it('builds a site without the example dashboard, whose front page points nowhere local', async () => {
    const site = path.join(built.site, 'build/site');
    const files = await readdir(site, { recursive: true });
    expect(files.some((f) => f.startsWith('dashboard'))).toBe(false);
    expect(files).not.toContain('_redirects');
    const index = await readFile(path.join(site, 'index.html'), 'utf8');
    expect(index).not.toMatch(/localhost|127\.0\.0\.1|:5432\d|:8888|dashboard/);
    const toml = await readFile(path.join(built.site, 'netlify.toml'), 'utf8');
    expect(toml).not.toMatch(/to = "\/dashboard"/);
    // Nothing routes to the local Checkout or portal pages, nor to any local address.
    expect(toml).not.toMatch(/"\/(checkout|billing|__bridge|__dev)\/|127\.0\.0\.1|localhost/);
  });
});

describe('npm run build', () => {
  it('bundles no module of the stripe package into the webhook, the meter reporter, status or not-found, as esbuild lists its inputs', async () => {
    // Not written (write: false): only the metafile is read.
    const result = await build({ ...functionBuildOptions(await functionEntries(), path.join(tmpdir(), 'billing-build-inputs')), write: false });
    const outputs = Object.entries(result.metafile?.outputs ?? {}).map(([file, output]) => ({
      name: path.basename(file, '.mjs'),
      bytes: output.bytes,
      stripeInputs: Object.keys(output.inputs).filter((input) => /(^|\/)node_modules\/stripe\//.test(input)),
    }));
    expect(outputs.map((o) => o.name).sort()).toEqual(FUNCTIONS);
    for (const { name, stripeInputs } of outputs) {
      if (WITHOUT_STRIPE_SDK.includes(name)) expect(stripeInputs, name).toEqual([]);
      else expect(stripeInputs.length, `${name} calls Stripe through the SDK`).toBeGreaterThan(0);
    }
    const webhook = outputs.find((o) => o.name === 'stripe-webhook');
    expect(webhook?.bytes).toBeLessThanOrEqual(MAX_WEBHOOK_BUNDLE_BYTES);
  });

  it("answers jsonwebtoken's Node version checks without semver, as the package's own files do", async () => {
    const dir = await unpackRoot('billing-build-check-');
    try {
      const files = ['psSupported', 'asymmetricKeyDetailsSupported', 'rsaPssKeyDetailsSupported'];
      const entry = path.join(dir, 'checks.mjs');
      await writeFile(entry, files.map((f) => `export { default as ${f} } from 'jsonwebtoken/lib/${f}.js';`).join('\n'));
      const options = functionBuildOptions([entry], path.join(dir, 'out'));
      const result = await build({ ...options, nodePaths: [path.resolve('node_modules')] });
      const inputs = Object.keys(result.metafile?.inputs ?? {});
      expect(inputs.filter((i) => i.includes('node_modules/semver/'))).toEqual([]);
      const built = (await import(pathToFileURL(path.join(dir, 'out/checks.mjs')).href)) as Record<string, boolean>;
      // The package's own files, with semver, as Node loads them unbundled.
      const original = createRequire(import.meta.url);
      for (const f of files) expect(built[f], f).toBe(original(`jsonwebtoken/lib/${f}.js`) as boolean);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('each zip through ___netlify-entry-point.mjs, cold, against the local stack', () => {
  const user = newUser();
  const auth = { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' };

  it('checkout: preflight, 401, 405, and a full 200 for a new user', async () => {
    const [options, unauthorized, wrongMethod, ok] = await run('stripe-checkout', [
      preflight('checkout'),
      { url: `${SITE}/api/stripe/checkout`, method: 'POST', headers: { 'content-type': 'application/json' } },
      { url: `${SITE}/api/stripe/checkout`, method: 'GET', headers: auth },
      { url: `${SITE}/api/stripe/checkout`, method: 'POST', headers: auth },
    ]);
    expectPreflight(options);
    expectError(unauthorized, 401, 'Missing bearer token');
    expect(unauthorized?.headers['www-authenticate']).toMatch(/^Bearer/);
    expectError(wrongMethod, 405, 'Method not allowed');
    expect(wrongMethod?.headers['allow']).toBe('POST, OPTIONS');
    expect(ok?.status, ok?.body).toBe(200);
    expect((JSON.parse(ok?.body ?? '{}') as { url?: string }).url).toMatch(/^https:\/\/checkout\.stripe\.com\//);
    const rows = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [user.id]);
    expect(rows).toHaveLength(1);
  });

  it('webhook: preflight, 405, 400 unsigned and badly signed, and a full 200 that links the subscription', async () => {
    const [{ stripe_customer_id: customerId } = { stripe_customer_id: '' }] = await query<{ stripe_customer_id: string }>(
      'select stripe_customer_id from billing_customers where user_id = $1',
      [user.id],
    );
    expect(customerId).toMatch(/^cus_/);
    const event = freshEvent('checkout.session.completed', (session) => {
      session['client_reference_id'] = user.id;
      session['metadata'] = { userId: user.id, email: user.email };
      session['customer'] = customerId;
      session['subscription'] = `sub_${user.id.slice(0, 8)}`;
    });
    const payload = JSON.stringify(event);
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: env('STRIPE_WEBHOOK_SECRET') });
    const url = `${SITE}/api/stripe/webhook`;
    const [options, wrongMethod, unsigned, badlySigned, ok] = await run('stripe-webhook', [
      preflight('webhook'),
      { url, method: 'GET', headers: {} },
      { url, method: 'POST', headers: { 'content-type': 'application/json' }, body: payload },
      { url, method: 'POST', headers: { 'stripe-signature': signature.replace(/v1=(\w)/, (_match, c: string) => `v1=${c === '0' ? '1' : '0'}`), 'content-type': 'application/json' }, body: payload },
      { url, method: 'POST', headers: { 'stripe-signature': signature, 'content-type': 'application/json' }, body: payload },
    ]);
    expectPreflight(options);
    expectError(wrongMethod, 405, 'Method not allowed');
    expectError(unsigned, 400, 'Missing stripe-signature header');
    expect(badlySigned?.status).toBe(400);
    expect(ok?.status, ok?.body).toBe(200);
    expect(JSON.parse(ok?.body ?? '{}')).toEqual({ received: true });
    expect(await query('select 1 from stripe_events where id = $1', [event.id])).toHaveLength(1);
  });

  it('subscription: preflight, 401, 405, and a full 200 with the linked subscription', async () => {
    const [options, unauthorized, wrongMethod, ok] = await run('stripe-subscription', [
      preflight('subscription'),
      { url: `${SITE}/api/stripe/subscription`, method: 'GET', headers: { authorization: 'Bearer nope' } },
      { url: `${SITE}/api/stripe/subscription`, method: 'POST', headers: auth },
      { url: `${SITE}/api/stripe/subscription`, method: 'GET', headers: { authorization: auth.authorization } },
    ]);
    expect(options?.status).toBe(204);
    expect(unauthorized?.status).toBe(401);
    expect(unauthorized?.headers['www-authenticate']).toMatch(/^Bearer/);
    expectError(wrongMethod, 405, 'Method not allowed');
    expect(wrongMethod?.headers['allow']).toBe('GET, OPTIONS');
    expect(ok?.status, ok?.body).toBe(200);
    expect(JSON.parse(ok?.body ?? '{}')).toMatchObject({ subscription: { status: 'active', access: true } });
  });

  it('portal: preflight, 401, 405, and a full 200 for the subscribed user', async () => {
    const [options, unauthorized, wrongMethod, ok] = await run('stripe-portal', [
      preflight('portal'),
      { url: `${SITE}/api/stripe/portal`, method: 'POST', headers: {} },
      { url: `${SITE}/api/stripe/portal`, method: 'PUT', headers: auth },
      { url: `${SITE}/api/stripe/portal`, method: 'POST', headers: auth },
    ]);
    expectPreflight(options);
    expectError(unauthorized, 401, 'Missing bearer token');
    expectError(wrongMethod, 405, 'Method not allowed');
    expect(ok?.status, ok?.body).toBe(200);
    expect((JSON.parse(ok?.body ?? '{}') as { url?: string }).url).toMatch(/^https:\/\//);
  });

  it('sync: preflight, 401, 405, and 400 for a body without a session', async () => {
    const url = `${SITE}/api/stripe/sync`;
    const [options, unauthorized, wrongMethod, bad] = await run('stripe-sync', [
      preflight('sync'),
      { url, method: 'POST', headers: {} },
      { url, method: 'GET', headers: auth },
      { url, method: 'POST', headers: auth, body: '{}' },
    ]);
    expectPreflight(options);
    expectError(unauthorized, 401, 'Missing bearer token');
    expectError(wrongMethod, 405, 'Method not allowed');
    expectError(bad, 400, 'sessionId must be a Checkout Session id (cs_…)');
  });

  it('seats: preflight, 401, 405, 400 for a bad team, and 400 for a team whose plan is not per seat', async () => {
    const team = randomUUID();
    await query(`insert into billing_team_members (team_id, user_id, role) values ($1, $2, 'owner')`, [team, user.id]);
    const url = `${SITE}/api/stripe/seats`;
    const [options, unauthorized, wrongMethod, bad, notPerSeat] = await run('stripe-seats', [
      preflight('seats'),
      { url, method: 'POST', headers: {} },
      { url, method: 'GET', headers: auth },
      { url, method: 'POST', headers: auth, body: '{"team":"acme"}' },
      { url, method: 'POST', headers: auth, body: JSON.stringify({ team }) },
    ]);
    expectPreflight(options);
    expectError(unauthorized, 401, 'Missing bearer token');
    expectError(wrongMethod, 405, 'Method not allowed');
    expectError(bad, 400, 'Invalid team');
    expectError(notPerSeat, 400, 'No per-seat subscription');
  });

  it('plans: preflight, 405, and a full 200', async () => {
    const url = `${SITE}/api/stripe/plans`;
    const [options, wrongMethod, ok] = await run('stripe-plans', [preflight('plans'), { url, method: 'POST', headers: {} }, { url, method: 'GET', headers: {} }]);
    expect(options?.status).toBe(204);
    expectError(wrongMethod, 405, 'Method not allowed');
    expect(ok?.status, ok?.body).toBe(200);
    expect(JSON.parse(ok?.body ?? '{}')).toHaveProperty('plans');
  });

  it('the scheduled catch-up, reconcile, seat sync and meter jobs: a run as Netlify starts one, with its summary', async () => {
    for (const name of ['stripe-catch-up', 'stripe-reconcile', 'stripe-seat-sync', 'stripe-meter-report', 'stripe-meter-reconcile']) {
      const [ok] = await run(name, [{ url: `${SITE}/.netlify/functions/${name}`, method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"next_run":"2026-12-01T12:00:00.000Z"}' }]);
      expect(ok?.status, `${name}: ${ok?.body}`).toBe(200);
      expect((JSON.parse(ok?.body ?? '{}') as { status?: string }).status, name).toMatch(/^(done|paused|busy|not due)$/);
    }
  });

  it('not-found: 404 in the API\'s error shape', async () => {
    const [missing] = await run('stripe-not-found', [{ url: `${SITE}/api/stripe/refunds`, method: 'POST', headers: {} }]);
    expectError(missing, 404, 'Not found');
  });
});
