// The functions as Netlify serves them: `netlify dev` routes /api/stripe/* through
// netlify.toml to the bundled functions, over real HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import { siteCopy, startNetlifyDev, type NetlifyDev } from '../scripts/lib/netlify-dev.ts';
import { startWarmSite, type WarmSite } from '../scripts/lib/warm-site.ts';
import { getFreePort } from '../scripts/stack/index.ts';
import { CORS_EXPECTED, freshEvent, newUser, query } from './support/stack.ts';
import { calendarMonth, untouchedUsage } from './support/usage.ts';
import Stripe from 'stripe';

let netlify: NetlifyDev;

beforeAll(async () => {
  const port = await getFreePort();
  const env = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  netlify = await startNetlifyDev({ port, env, isolated: true });
});

afterAll(async () => {
  await netlify.stop();
});

function api(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${netlify.url}/api/stripe/${path}`, init);
}

describe('netlify dev routes /api/stripe/* to the functions', () => {
  it('walks the seed flow: checkout, paid webhook, already subscribed, portal', async () => {
    const user = newUser();
    const auth = { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' };

    const first = await api('checkout', { method: 'POST', headers: auth });
    expect(first.status).toBe(200);
    expect(((await first.json()) as { url: string }).url).toMatch(/^https:\/\/checkout\.stripe\.com\//);

    const portalBefore = await api('portal', { method: 'POST', headers: auth });
    expect(portalBefore.status).toBe(400);
    expect(await portalBefore.json()).toEqual({ error: 'No active subscription' });

    const [{ stripe_customer_id: customerId } = { stripe_customer_id: '' }] = await query<{ stripe_customer_id: string }>(
      'select stripe_customer_id from billing_customers where user_id = $1',
      [user.id],
    );
    const event = freshEvent('checkout.session.completed', (session) => {
      session['client_reference_id'] = user.id;
      session['metadata'] = { userId: user.id, email: user.email };
      session['customer'] = customerId;
      session['subscription'] = `sub_${user.id.slice(0, 8)}`;
    });
    const payload = JSON.stringify(event);
    const signature = Stripe.webhooks.generateTestHeaderString({ payload, secret: process.env['STRIPE_WEBHOOK_SECRET'] ?? '' });
    const delivered = await api('webhook', { method: 'POST', headers: { 'stripe-signature': signature, 'content-type': 'application/json' }, body: payload });
    expect(delivered.status).toBe(200);
    expect(await delivered.json()).toEqual({ received: true });

    const again = await api('checkout', { method: 'POST', headers: auth });
    expect(again.status).toBe(400);
    expect(await again.json()).toEqual({ error: 'Already subscribed' });

    const portal = await api('portal', { method: 'POST', headers: auth });
    expect(portal.status).toBe(200);
    expect(((await portal.json()) as { url: string }).url).toMatch(/^https:\/\//);
  });

  it.each(['checkout', 'portal', 'webhook'])('answers the preflight for %s with CORS', async (path) => {
    const response = await api(path, {
      method: 'OPTIONS',
      headers: { origin: 'https://dashboard.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(response.status).toBe(204);
    for (const [name, value] of Object.entries(CORS_EXPECTED)) expect(response.headers.get(name)).toBe(value);
  });

  it.each(['checkout', 'portal', 'webhook'])('answers 405 with Allow and the error shape for GET %s', async (path) => {
    const response = await api(path);
    expect(response.status).toBe(405);
    expect(response.headers.get('allow')).toBe('POST, OPTIONS');
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
    expect(await response.json()).toEqual({ error: 'Method not allowed' });
  });

  it('routes GET /api/stripe/subscription, and answers 404 in the error shape for unknown paths', async () => {
    const user = newUser();
    const subscription = await api('subscription', { headers: { authorization: `Bearer ${user.token}` } });
    expect(subscription.status).toBe(200);
    expect(await subscription.json()).toEqual({ subscription: null, ...untouchedUsage(null, calendarMonth()) });
    for (const path of ['refunds', 'checkout/extra', 'webhooks']) {
      const response = await api(path, { method: 'POST' });
      expect(response.status, path).toBe(404);
      expect(response.headers.get('access-control-allow-origin')).toBe('*');
      expect(await response.json()).toEqual({ error: 'Not found' });
    }
  });

  it('rejects an unsigned webhook with 400', async () => {
    const response = await api('webhook', { method: 'POST', body: '{}' });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ error: 'Missing stripe-signature header' });
  });
});

// netlify dev runs every invocation in a new worker thread that loads the function afresh
// (a cold start per request: ~150 ms each here, a preflight too), so a burst is as many
// cold starts at once and crawls (docs/performance.md). `npm run dev -- --warm` serves the
// same build with each function loaded once; this is the burst it must hold.
describe('npm run dev -- --warm (scripts/lib/warm-site.ts)', () => {
  let warm: WarmSite;
  let site: string;

  beforeAll(async () => {
    site = await siteCopy();
    warm = await startWarmSite({ port: await getFreePort(), root: site });
  });

  afterAll(async () => {
    await warm?.stop();
    if (site) await rm(site, { recursive: true, force: true });
  });

  function warmApi(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${warm.url}/api/stripe/${path}`, init);
  }

  it('routes as netlify.toml says and serves the dashboard site', async () => {
    const root = await fetch(`${warm.url}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/dashboard');
    const page = await fetch(`${warm.url}/dashboard`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<html');
    const missing = await warmApi('refunds', { method: 'POST' });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ error: 'Not found' });
    const preflight = await warmApi('checkout', { method: 'OPTIONS' });
    expect(preflight.status).toBe(204);
    const unsigned = await warmApi('webhook', { method: 'POST', body: '{}' });
    expect(unsigned.status).toBe(400);
  });

  it('holds a burst: 50 concurrent checkouts of new users, then 100 concurrent webhook deliveries, no 5xx', async () => {
    const timed = async (send: () => Promise<Response>) => {
      const started = performance.now();
      const response = await send();
      const body = await response.text();
      return { status: response.status, body, ms: performance.now() - started };
    };
    const users = Array.from({ length: 50 }, () => newUser());
    const checkouts = await Promise.all(
      users.map((user) => timed(() => warmApi('checkout', { method: 'POST', headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json' } }))),
    );
    const secret = process.env['STRIPE_WEBHOOK_SECRET'] ?? '';
    const deliveries = await Promise.all(
      Array.from({ length: 100 }, () => {
        const payload = JSON.stringify(freshEvent('customer.subscription.updated', (sub) => {
          sub['id'] = `sub_burst_${Math.random().toString(36).slice(2)}`;
          sub['customer'] = `cus_burst_${Math.random().toString(36).slice(2)}`;
        }));
        const headers = { 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret }), 'content-type': 'application/json' };
        return timed(() => warmApi('webhook', { method: 'POST', headers, body: payload }));
      }),
    );
    const summary = (results: { status: number; ms: number }[]) => {
      const ms = results.map((r) => r.ms).sort((a, b) => a - b);
      return { statuses: [...new Set(results.map((r) => r.status))], p50: Math.round(ms[Math.floor(ms.length / 2)] ?? 0), max: Math.round(ms.at(-1) ?? 0) };
    };
    console.log(JSON.stringify({ checkouts: summary(checkouts), deliveries: summary(deliveries) }));
    expect(checkouts.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body}`)).toEqual([]);
    expect(deliveries.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body}`)).toEqual([]);
  }, 120_000);

});
