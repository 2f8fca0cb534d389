// The example dashboard in a real browser: headless Chromium (the system's, or else the
// one the @sparticuz/chromium package ships; driven by playwright-core) against `netlify dev` serving public/ and the functions, with the
// test stack as Supabase and Stripe, and `npm run stripe:trigger` playing Stripe.
// Screenshots of each step go to test-results/screenshots/ (CI keeps them).
//
// Also here, because it needs the same `netlify dev`: the site as deployed has no way
// to mint a token (the local sign-in lives in the local stack's gateway only).

import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNetlifyDev, type NetlifyDev } from '../scripts/lib/netlify-dev.ts';
import { localUserId } from '../scripts/lib/tokens.ts';
import { getFreePort } from '../scripts/stack/index.ts';
import { checkoutCompletedEvent, subscriptionEvent } from './support/events.ts';
import { env, newUser, postStripeObject, query, stripeRequests } from './support/stack.ts';
import { runTrigger } from './support/trigger.ts';

const SYSTEM_CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];
const SCREENSHOTS = path.resolve(import.meta.dirname, '../test-results/screenshots');
const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

let netlify: NetlifyDev;

beforeAll(async () => {
  const port = await getFreePort();
  const env = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  // Checkout and the portal return to this netlify dev, as they return to the site's URL.
  // isolated: its own .netlify/ build folder, beside test/netlify-dev.test.ts's netlify dev (or npm run dev).
  netlify = await startNetlifyDev({ port, env: { ...env, URL: `http://localhost:${port}` }, isolated: true });
});

afterAll(async () => {
  await netlify?.stop();
});

describe('the site as netlify dev serves it (netlify.toml, public/, netlify/functions)', () => {
  it('serves the dashboard at /dashboard, with / pointing to it', async () => {
    const root = await fetch(`${netlify.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/dashboard');
    for (const file of ['/dashboard', '/dashboard/dashboard.js', '/dashboard/dashboard.css']) {
      const response = await fetch(`${netlify.url}${file}`);
      expect(response.status, file).toBe(200);
    }
  });

  it('has no route that mints a token: the local sign-in is not part of the site', async () => {
    for (const target of ['/auth/v1/dev/token', '/.netlify/functions/dev-token', '/api/auth/dev/token', '/api/stripe/dev/token']) {
      const get = await fetch(`${netlify.url}${target}`);
      expect(get.status, `GET ${target}`).toBe(404);
      const post = await fetch(`${netlify.url}${target}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"email":"ada@example.com"}' });
      expect([404, 405], `POST ${target}`).toContain(post.status);
      expect(await post.text()).not.toContain('access_token');
    }
  });
});

// In Chromium ---------------------------------------------------------------------------

let browser: Browser;

const COMMON_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-gpu'];

/**
 * Flags of @sparticuz/chromium's that this test cannot take: it checks CORS (web security
 * on), opens several contexts in one browser (one process would close with the first), and
 * playwright-core sets the headless mode itself.
 */
const REFUSED_PACKAGED_ARGS = new Set(['--disable-web-security', '--allow-running-insecure-content', '--single-process', "--headless='shell'"]);

/**
 * CHROMIUM_PATH, else a system Chromium, else the build @sparticuz/chromium ships (an npm
 * devDependency, so `npm install` brings it: unpacked to the temporary folder on first use,
 * with the flags it needs there, less those above).
 */
async function chromiumToLaunch(): Promise<{ executablePath: string; args: string[] }> {
  const chosen = process.env['CHROMIUM_PATH'];
  if (chosen) {
    if (!existsSync(chosen)) throw new Error(`CHROMIUM_PATH=${chosen}: no such file`);
    return { executablePath: chosen, args: COMMON_ARGS };
  }
  const system = SYSTEM_CHROMIUM.find((file) => existsSync(file));
  if (system) return { executablePath: system, args: COMMON_ARGS };
  const { default: packaged } = await import('@sparticuz/chromium');
  const executablePath = await packaged.executablePath();
  const args = packaged.args.filter((arg) => !REFUSED_PACKAGED_ARGS.has(arg));
  return { executablePath, args: [...new Set([...args, ...COMMON_ARGS])] };
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Stripe's hosts are not reachable (no network here): a stub page stands in, and we note the visit. */
async function stubStripe(context: BrowserContext): Promise<string[]> {
  const visited: string[] = [];
  await context.route(
    (url) => !LOOPBACK.has(url.hostname),
    async (route) => {
      const request = route.request();
      if (!request.isNavigationRequest()) return route.abort();
      visited.push(request.url());
      const host = new URL(request.url()).hostname;
      return route.fulfill({
        status: 200,
        contentType: 'text/html; charset=utf-8',
        body: `<!doctype html><html lang="en"><title>Stripe (stub)</title><body style="font:16px system-ui;margin:2rem">
          <h1>Stripe stand-in</h1><p>The browser test reached <strong>${host}</strong>; Stripe's page would be here.</p></body></html>`,
      });
    },
  );
  return visited;
}

describe('the example dashboard in Chromium', () => {
  beforeAll(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    browser = await chromium.launch(await chromiumToLaunch());
  });

  afterAll(async () => {
    await browser?.close();
  });

  it('sign in, no subscription, subscribe, active, portal, cancel at period end, cancel', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 900 }, locale: 'en-US' });
    const stripeVisits = await stubStripe(context);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    const webhook = `${netlify.url}/api/stripe/webhook`;
    const email = `browser-${Date.now()}@example.com`;
    const userId = localUserId(email);
    const title = page.locator('#status-title');

    try {
      // `/` leads to the dashboard; ?supabase= points this tab at the test stack's sign-in.
      await page.goto(`${netlify.url}/?supabase=${encodeURIComponent(env('SUPABASE_URL'))}`);
      expect(new URL(page.url()).pathname).toBe('/dashboard');
      await page.getByLabel('Email').fill(email);
      await shot(page, '01-sign-in');

      await page.getByRole('button', { name: 'Sign in as a test user' }).click();
      await expect.poll(() => title.textContent(), { timeout: 10_000 }).toBe('No subscription');
      expect(await page.locator('#who-id').textContent()).toBe(userId);
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('account-heading');
      await shot(page, '02-no-subscription');
      await page.getByText('Play Stripe from a terminal').click();
      expect(await page.locator('#local-commands').textContent()).toContain(`npm run stripe:trigger -- subscribe --user ${userId}`);
      await shot(page, '03-local-help');
      await page.getByText('Play Stripe from a terminal').click();

      // An API error, shown as the API words it.
      await page.getByRole('button', { name: 'Manage billing' }).click();
      await expect.poll(() => page.getByRole('alert').textContent(), { timeout: 10_000 }).toBe('No active subscription');
      await shot(page, '04-error-from-the-api');

      // Subscribe: the checkout URL from the API, then follow it (the seed's window.location.href).
      await page.getByRole('button', { name: 'Subscribe' }).click();
      const handoff = page.getByRole('region', { name: 'Checkout is ready (stripe-mock)' });
      await handoff.waitFor();
      expect(await page.getByRole('alert').isHidden()).toBe(true);
      const checkoutUrl = (await page.locator('#handoff-url').textContent()) ?? '';
      expect(checkoutUrl).toMatch(/^https:\/\/checkout\.stripe\.com\/.*cs_test_/);
      expect(await page.locator('#handoff-command').textContent()).toBe(`npm run stripe:trigger -- subscribe --user ${userId}`);
      await shot(page, '05-checkout-handoff');
      await page.getByRole('button', { name: 'Continue to Stripe Checkout anyway' }).click();
      await page.waitForURL(/^https:\/\/checkout\.stripe\.com\//);
      expect(stripeVisits).toContain(checkoutUrl);
      await shot(page, '06-stripe-checkout-reached');

      // The customer pays: Stripe's events, then Stripe sends the browser to the success URL.
      const paid = await runTrigger(webhook, 'subscribe', '--user', userId);
      expect(paid.code, paid.stderr).toBe(0);
      const [sessionCreate] = await stripeRequests((r) => r.path === '/v1/checkout/sessions' && r.params['metadata[userId]'] === userId);
      const sessionId = /cs_test_\w+/.exec(checkoutUrl)?.[0] ?? '';
      const successUrl = (sessionCreate?.params['success_url'] ?? '').replace('{CHECKOUT_SESSION_ID}', sessionId);
      expect(successUrl).toBe(`${netlify.url}/dashboard?checkout=success&session_id=${sessionId}`);
      await page.goto(successUrl);
      await expect.poll(() => title.textContent(), { timeout: 15_000 }).toBe('Active');
      await expect.poll(() => page.locator('#notice').textContent(), { timeout: 10_000 }).toBe('Payment confirmed: your subscription is active.');
      expect(new URL(page.url()).search).toBe('');
      const details = (await page.locator('#status-details').textContent()) ?? '';
      expect(details).toMatch(/AccessYes/);
      expect(details).toMatch(/Renews on\w+ \d{1,2}, \d{4}/);
      expect(details).toMatch(/Last payment€9\.00, paid on /);
      await shot(page, '07-active');

      // The portal: while the hand-off is open, the page watches for the change.
      await page.getByRole('button', { name: 'Manage billing' }).click();
      await page.getByRole('region', { name: 'Billing portal is ready (stripe-mock)' }).waitFor();
      const portalUrl = (await page.locator('#handoff-url').textContent()) ?? '';
      expect(portalUrl).toMatch(/^https:\/\/[^/]+\.stripe\.me\/session\//);
      await shot(page, '08-portal-handoff');
      const canceling = await runTrigger(webhook, 'cancel-at-period-end', '--user', userId);
      expect(canceling.code, canceling.stderr).toBe(0);
      await expect.poll(() => title.textContent(), { timeout: 10_000 }).toMatch(/^Active until \w+ \d{1,2}, \d{4}$/);
      expect(await page.locator('#status-summary').textContent()).toMatch(/^You canceled: your subscription will not renew\./);
      expect(await page.locator('#handoff').isHidden()).toBe(true);
      await shot(page, '09-canceling');

      await page.getByRole('button', { name: 'Manage billing' }).click();
      await page.getByRole('button', { name: 'Continue to the billing portal anyway' }).click();
      await page.waitForURL((url) => url.hostname.endsWith('.stripe.me'));
      expect(stripeVisits.some((visited) => new URL(visited).hostname === new URL(portalUrl).hostname)).toBe(true);
      await shot(page, '10-stripe-portal-reached');

      // The subscription ends; the customer comes back by the portal's return URL.
      const ended = await runTrigger(webhook, 'cancel', '--user', userId);
      expect(ended.code, ended.stderr).toBe(0);
      const [{ stripe_customer_id: customerId } = { stripe_customer_id: '' }] = await query<{ stripe_customer_id: string }>(
        'select stripe_customer_id from billing_customers where user_id = $1',
        [userId],
      );
      const [portalCreate] = await stripeRequests((r) => r.path === '/v1/billing_portal/sessions' && r.params['customer'] === customerId);
      expect(portalCreate?.params['return_url']).toBe(`${netlify.url}/dashboard`);
      await page.goto(portalCreate?.params['return_url'] ?? '');
      await expect.poll(() => title.textContent(), { timeout: 10_000 }).toBe('Canceled');
      expect(await page.locator('#status-summary').textContent()).toBe('Your subscription has ended. Subscribe again any time.');
      expect(await page.locator('#status-details').textContent()).toMatch(/AccessNo/);
      await shot(page, '11-canceled');

      expect(pageErrors).toEqual([]);
    } catch (error) {
      await shot(page, 'failure-dashboard').catch(() => {});
      throw error;
    } finally {
      await context.close();
    }
  }, 90_000);

  it('back from Checkout, the page is active before any webhook: it asks POST /api/stripe/sync', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 900 }, locale: 'en-US' });
    await stubStripe(context);
    const page = await context.newPage();
    const email = `browser-sync-${Date.now()}@example.com`;
    const userId = localUserId(email);
    const title = page.locator('#status-title');
    try {
      await page.goto(`${netlify.url}/dashboard?supabase=${encodeURIComponent(env('SUPABASE_URL'))}`);
      await page.getByLabel('Email').fill(email);
      await page.getByRole('button', { name: 'Sign in as a test user' }).click();
      await expect.poll(() => title.textContent(), { timeout: 10_000 }).toBe('No subscription');
      await page.getByRole('button', { name: 'Subscribe' }).click();
      await page.getByRole('region', { name: 'Checkout is ready (stripe-mock)' }).waitFor();

      // The user pays; Stripe holds the complete session (served by the bridge), and
      // sends the browser back before any webhook is delivered.
      const [link] = await query<{ stripe_customer_id: string }>('select stripe_customer_id from billing_customers where user_id = $1', [userId]);
      const ids = { userId, customerId: link?.stripe_customer_id ?? '', subscriptionId: `sub_browser${Date.now()}` };
      const now = Math.floor(Date.now() / 1000);
      const session = checkoutCompletedEvent(ids, now).data.object as unknown as Record<string, unknown>;
      session['subscription'] = subscriptionEvent('customer.subscription.created', ids, now, { status: 'active', periodStart: now, periodEnd: now + 30 * 86_400 }).data.object;
      await postStripeObject(`/v1/checkout/sessions/${String(session['id'])}`, session);

      await page.goto(`${netlify.url}/dashboard?checkout=success&session_id=${String(session['id'])}`);
      await expect.poll(() => title.textContent(), { timeout: 15_000 }).toBe('Active');
      await expect.poll(() => page.locator('#notice').textContent(), { timeout: 10_000 }).toBe('Payment confirmed: your subscription is active.');
      await shot(page, '13-active-by-sync');
      const delivered = await query("select type from stripe_events where stripe_customer_id = $1 and type not like 'sync.%'", [ids.customerId]);
      expect(delivered).toEqual([]);
      expect(await stripeRequests((r) => r.method === 'GET' && r.path === `/v1/checkout/sessions/${String(session['id'])}`)).toHaveLength(1);
    } finally {
      await context.close();
    }
  });

  it('calls the API from another origin with the seed\'s fetch code: CORS and its preflight, in the browser', async () => {
    const user = newUser();
    const api = netlify.url;
    const port = await getFreePort();
    const origin = `http://127.0.0.1:${port}`;
    // A dashboard on another origin, with the seed's snippet (only the API's origin added).
    const html = `<!doctype html><html lang="en"><title>Another origin</title><body style="font:16px system-ui;margin:2rem">
<h1>A dashboard on ${origin}</h1><pre id="out">running…</pre>
<script type="module">
const token = ${JSON.stringify(user.token)};
const results = {};
async function call(name, path, init) {
  try {
    const response = await fetch('${api}' + path, init);
    results[name] = { status: response.status, body: await response.json() };
  } catch (error) {
    results[name] = { failed: String(error) };
  }
}
await call('checkout', '/api/stripe/checkout', {
  method: 'POST',
  headers: {
    'Authorization': \`Bearer \${token}\`,
    'Content-Type': 'application/json'
  }
});
await call('portal', '/api/stripe/portal', {
  method: 'POST',
  headers: {
    'Authorization': \`Bearer \${token}\`,
    'Content-Type': 'application/json'
  }
});
await call('subscription', '/api/stripe/subscription', { headers: { 'Authorization': \`Bearer \${token}\` } });
// Control: the same kind of call to a path without CORS headers is refused by the browser.
await call('noCors', '/dashboard/', { headers: { 'Authorization': \`Bearer \${token}\` } });
document.getElementById('out').textContent = JSON.stringify(results, null, 2);
window.results = results;
</script></body></html>`;
    const server: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(html);
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    const context = await browser.newContext({ viewport: { width: 900, height: 900 } });
    const page = await context.newPage();

    // What the browser sent on the wire, preflights included (DevTools' network log).
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    const sent = new Map<string, { method: string; url: string; headers: Record<string, string>; status?: number }>();
    cdp.on('Network.requestWillBeSent', (event) => {
      const headers = Object.fromEntries(Object.entries(event.request.headers).map(([name, value]) => [name.toLowerCase(), String(value)]));
      sent.set(event.requestId, { method: event.request.method, url: event.request.url, headers });
    });
    cdp.on('Network.responseReceived', (event) => {
      const request = sent.get(event.requestId);
      if (request) request.status = event.response.status;
    });

    try {
      await page.goto(`${origin}/`);
      await page.waitForFunction(() => 'results' in window, undefined, { timeout: 15_000 });
      const results = (await page.evaluate(() => (window as unknown as { results: unknown }).results)) as Record<string, { status?: number; body?: { url?: string; error?: string }; failed?: string }>;
      await shot(page, '12-cors-from-another-origin');

      expect(results['checkout']?.status).toBe(200);
      expect(results['checkout']?.body?.url).toMatch(/^https:\/\/checkout\.stripe\.com\//);
      // An error is readable across origins too, in the API's own words.
      expect(results['portal']).toEqual({ status: 400, body: { error: 'No active subscription' } });
      expect(results['subscription']).toEqual({ status: 200, body: { subscription: null } });
      expect(results['noCors']?.failed).toMatch(/TypeError: Failed to fetch/);

      // Authorization is not a CORS-safelisted header: each call was preflighted, and the
      // function's 204 let the real request through.
      for (const [path, method] of [['/api/stripe/checkout', 'POST'], ['/api/stripe/portal', 'POST'], ['/api/stripe/subscription', 'GET']] as const) {
        const calls = [...sent.values()].filter((r) => r.url === `${api}${path}`);
        // (DevTools may report the preflight after the request it clears.)
        expect(calls.map((r) => `${r.method} ${r.status}`).sort(), path).toEqual(['OPTIONS 204', `${method} ${results[path.split('/').at(-1) ?? '']?.status}`].sort());
        const preflight = calls.find((r) => r.method === 'OPTIONS');
        expect(preflight?.headers, path).toMatchObject({ origin, 'access-control-request-method': method });
        expect(preflight?.headers['access-control-request-headers']).toMatch(/authorization/);
      }
    } finally {
      await context.close();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);
});
