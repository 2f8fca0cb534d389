// The functions as Netlify serves them: `netlify dev` routes /api/stripe/* through
// netlify.toml to the bundled functions, over real HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNetlifyDev, type NetlifyDev } from '../scripts/lib/netlify-dev.ts';
import { getFreePort } from '../scripts/stack/index.ts';
import { CORS_EXPECTED, freshEvent, newUser, query } from './support/stack.ts';
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
    expect(await subscription.json()).toEqual({ subscription: null });
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
